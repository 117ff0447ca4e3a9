"""Local HTTP servers on 127.0.0.1 that speak LLM wire formats and play scripted replies."""
