"""HTTP layer: thin Litestar handlers over the domain functions in ``app``."""
