"""Where advviz writes: checkpoints and resume states (atomic directories), which directories it
may replace and the run lock (outdir), JSON in and out (jsonio), and output files (outputs)."""
