"""The foundation every layer uses: data I/O, paths and file names, run records, model loading, exact
log-probabilities, hub downloads, the command-line generator and the resumable per-sample runner."""
