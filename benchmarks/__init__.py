"""Benchmarks: the session store next to the seed's naive way and the peers (``make bench``)."""
