"""jaxdl."""
