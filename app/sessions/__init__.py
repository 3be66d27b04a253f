"""Sessions: runs grouped under a name, with their totals (pages and JSON API)."""
