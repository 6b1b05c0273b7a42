"""Small helpers every part shares: config typing, the step convention, result files, the one
timer, error norms, threads and progress, user errors."""
