"""The trace view: a run's spans as a tree with a waterfall, each span's detail, its JSON twin."""
