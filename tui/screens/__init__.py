"""The dashboard's screens: the stream grid, the merged view, the run summary and the dialogs."""
