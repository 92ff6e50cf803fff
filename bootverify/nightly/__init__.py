"""What a nightly job needs around `bootverify run`: the failures it knows about (expect), last
night's report to compare with (baseline), a narrowed run (selection), where the reports go and
what the run was (output, meta). Each takes the run's dataclasses and gives plain data; the
report formats are in bootverify/reports/, the options in cli.py."""
