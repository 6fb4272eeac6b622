"""The FastAPI app: start tasks, follow them, cancel them, whichever executor runs them."""
