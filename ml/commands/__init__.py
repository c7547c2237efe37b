"""One module per CLI command. Each defines HELP, NEEDS_JOB, add_arguments(parser) and
run(args, job, reporter). Modules import heavy libraries (torch) inside run(), never at the top,
so `python -m ml --help` stays fast and works without torch."""
