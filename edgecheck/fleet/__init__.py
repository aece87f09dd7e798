"""`edgecheck fleet`: one summary across many nodes' reports (SPEC 7.5).

    from edgecheck.fleet.summarise import summarise, render
    with summarise(["reports/"], on_invalid=lambda bad: print(bad.path, bad.problem)) as summary:
        for chunk in render(summary, "html"):
            out.write(chunk)
    sys.exit(summary.exit_code)  # 0 every node ready, 1 otherwise or a file skipped, 2 no valid report

Reports are read one at a time and reduced to one row each (reportfile.py); the aggregator
(aggregate.py) writes the rows to a temporary on-disk SQLite store (store.py) and keeps one
definition per distinct cause in memory. Renderers (text, json, html) are pure, read the
summary's iterators (summary.py) and yield the output in chunks. The click command is
`edgecheck.fleet.command.fleet_command` (registered in the CLI: this package's face stays empty so
`edgecheck --help` does not load the aggregator); the JSON Schema of the json format ships as
edgecheck/fleet/schema.json.
"""
