"""Worker processes: where DSPy runs when the front (dashboard, headless writer) must not."""
