"""App-side helpers: cached models and data, the shared sidebar, widget forms and plots.

Pages import from here and call the library once per action; nothing here does tensor math.
"""
