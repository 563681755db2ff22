"""Keep pytest from collecting the verbatim scripts that the e2e tests run."""

collect_ignore = ["scripts"]
