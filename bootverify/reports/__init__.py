"""The reports of one `bootverify run` besides the JSON and the table (bootverify/report.py):
the human summary (summary.py), JUnit (junit.py), KTAP (ktap.py) and KCIDB (kcidb.py), all
made from one `RunRecord` (model.py)."""
