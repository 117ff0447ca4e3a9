"""Views of a run that read the ledger only: the progress chart, the HTML report, the live dashboard."""
