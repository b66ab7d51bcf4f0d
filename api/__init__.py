"""The composition root: FastAPI application, routers and the `shahr` CLI."""
