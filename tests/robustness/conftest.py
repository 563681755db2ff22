"""Keep pytest from collecting the worker scripts the robustness tests run."""

collect_ignore = ["scripts"]
