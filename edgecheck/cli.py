"""Command line: parses options and wires them to the runner and the renderers. Nothing else.

Heavy modules (the probes, requests, psutil) are imported inside the commands that need them, so
`edgecheck --help` starts fast.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple

import click

from edgecheck import __version__, exitcodes
from edgecheck.errors import EdgecheckError

GC_THRESHOLD = 100_000  # allocations between two young-generation collections (CPython's default: 700)


def _split_commas(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> Tuple[str, ...]:
    """Repeatable options also take comma lists (EDGECHECK_RAVEN_GATEWAY=a,b)."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def selection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options that decide the plan; shared by `run`, `targets` and the agent."""
    options = [
        click.option("--region", envvar="EDGECHECK_REGION", metavar="ID", help="Region id of the cluster, e.g. cn-hangzhou. Required."),
        click.option("--mode", envvar="EDGECHECK_MODE", type=click.Choice(["public", "dedicated"]), default="public", show_default=True, help="Public-network or dedicated-connection mode."),
        click.option("--phase", envvar="EDGECHECK_PHASE", type=click.Choice(["join", "running"]), default=None, help="join: before joining or upgrading (ports must be free); running: joined node (ports must listen). [default: join; agent: running]"),
        click.option("--k8s-version", envvar="EDGECHECK_K8S_VERSION", metavar="X.Y", help="Cluster version; selects the < 1.26 rules. [default: newest rules, >= 1.26]"),
        click.option("--apiserver", envvar="EDGECHECK_APISERVER", metavar="HOST[:PORT]", help="API server endpoint: HOST[:PORT] (default port 6443) or https://HOST[:PORT] as the console shows it. [default: from --kubeconfig; phase running: from this node's configuration]"),
        click.option("--kubeconfig", envvar="EDGECHECK_KUBECONFIG", metavar="PATH", help="Take the API server and its CA from this kubeconfig's current context (credentials are never read)."),
        click.option("--raven-gateway", "raven_gateways", envvar="EDGECHECK_RAVEN_GATEWAY", multiple=True, callback=_split_commas, metavar="HOST", help="Raven cloud gateway SLB address (repeatable; env: comma list). Public mode."),
        click.option("--tunnel-server", envvar="EDGECHECK_TUNNEL_SERVER", metavar="HOST", help="Tunnel server SLB address (clusters < 1.26)."),
        click.option("--network-plugin", envvar="EDGECHECK_NETWORK_PLUGIN", type=click.Choice(["flannel", "terway-edge"]), default="flannel", show_default=True),
        click.option("--self-host-ntp", envvar="EDGECHECK_SELF_HOST_NTP", is_flag=True, default=False, help="The node syncs its clock itself: skip NTP endpoints, still check the local clock."),
        click.option("--targets-file", "targets_files", envvar="EDGECHECK_TARGETS_FILE", multiple=True, type=click.Path(dir_okay=False), metavar="PATH", help="Extra targets in the catalog format (repeatable)."),
        click.option("--node-root", envvar="EDGECHECK_NODE_ROOT", metavar="DIR", type=click.Path(file_okay=False), help="Read this node's configuration (API server, CA, YurtHub) under DIR, e.g. a mounted image. [default: /]"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def probe_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options that shape how targets are probed and reported; shared by `run` and the agent."""
    options = [
        click.option("--timeout", envvar="EDGECHECK_TIMEOUT", type=click.FloatRange(min=0.1, max=120), default=3.0, show_default=True, metavar="SECONDS", help="Per-probe timeout."),
        click.option("--ca-bundle", envvar="EDGECHECK_CA_BUNDLE", metavar="PATH", help="Trust anchors for TLS (else REQUESTS_CA_BUNDLE, SSL_CERT_FILE, the system store)."),
        click.option("--apiserver-ca", envvar="EDGECHECK_APISERVER_CA", metavar="PATH", help="The cluster CA that signs the API server certificate. [default: from --kubeconfig or this node's configuration]"),
        click.option("--source-cidr", "source_cidrs", envvar="EDGECHECK_SOURCE_CIDR", multiple=True, callback=_split_commas, metavar="CIDR", help="A source that must reach this host's inbound ports, for the host firewall check (repeatable; env: comma list). [default: this host's own subnets in public mode, any source in dedicated mode]"),
        click.option("-v", "--verbose", is_flag=True, default=False, help="Show evidence for every check."),
        click.option("--strict", envvar="EDGECHECK_STRICT", is_flag=True, default=False, help="Warnings fail too (exit 1)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class LazyGroup(click.Group):
    """A group whose listed subcommands import their module on first use (click's documented lazy
    loading: get_command/list_commands), so `run` never imports what only `fleet` needs."""

    lazy_commands = {"fleet": "edgecheck.fleet.command:fleet_command"}

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            import importlib

            module, _, name = self.lazy_commands[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), name), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="edgecheck")
# Read by cli_entry from argv and the environment (it must know before click parses anything).
@click.option("--debug", is_flag=True, envvar="EDGECHECK_DEBUG", expose_value=False, help="Show tracebacks for internal errors.")
def main() -> None:
    """Can this host join an ACK Edge cluster and keep working? If not, what exactly is blocked."""


def _warn(message: str) -> None:
    click.echo(f"edgecheck: warning: {message}", err=True)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


@main.command()
@selection_options
@probe_options
@click.option("--format", "fmt", envvar="EDGECHECK_FORMAT", type=click.Choice(["text", "json", "prometheus"]), default="text", show_default=True, help="Report format on stdout.")
@click.option("--output", "outputs", envvar="EDGECHECK_OUTPUT", multiple=True, type=click.Path(dir_okay=False), metavar="PATH", help="Also write the report to PATH, atomically (format from --format or the extension; once per format).")
def run(fmt: str, outputs: Tuple[str, ...], **options: Any) -> None:
    """Probe everything the plan lists and report what is blocked."""
    from edgecheck import runner

    _report(runner.prepare(options), fmt, outputs, options["verbose"])


def _report(prepared: Any, fmt: str, outputs: Tuple[str, ...], verbose: bool) -> None:
    """Run a prepared plan and render it: the same report, formats and exit codes for run and reach."""
    from edgecheck import report as reports
    from edgecheck import runner

    reports.check_outputs(outputs, fmt)
    report = runner.run(prepared)
    if fmt != "text":  # the text report shows plan warnings itself
        for warning in report.warnings:
            _warn(warning)
    color = fmt == "text" and reports.use_color(sys.stdout)
    for piece in reports.render_chunks(report, fmt, verbose=verbose, color=color):
        click.echo(piece, nl=False)
    reports.write_outputs(report, outputs, fmt, verbose=verbose)
    sys.exit(exitcodes.for_verdict(report.passes))


# ---------------------------------------------------------------------------------------------
# Both sides of the inbound path (SPEC 7.3): listen on the node, reach from the other side
# ---------------------------------------------------------------------------------------------

_TOKEN_HELP = ("The session token shared by `listen` and `reach` (12-128 characters: letters, digits and "
               "- _ . ~ + / =); it never crosses the network. [listen default: a new one, printed]")


@main.command()
@selection_options
@click.option("--token", envvar="EDGECHECK_TOKEN", metavar="TOKEN", help=_TOKEN_HELP)
@click.option("--duration", envvar="EDGECHECK_DURATION", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True, metavar="SECONDS", help="Stop after this long (SIGINT or SIGTERM stop earlier); nothing stays bound.")
@click.option("--address", "addresses", multiple=True, callback=_split_commas, metavar="ADDR", help="This node's address as the other side reaches it, for the printed `reach` command (repeatable). [default: this host's first address]")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Summary format on stdout (json: edgecheck/listen/v1, and the banner and probe lines go to stderr).")
def listen(fmt: str, addresses: Tuple[str, ...], **options: Any) -> None:
    """On the node, before the join: open the plan's free inbound ports for a while and answer the
    `edgecheck reach` probes that carry the token. Prints the exact `reach` command, one line per
    probe received, and a summary. Exit 0 when every opened port was reached, 1 otherwise."""
    from edgecheck.reach import session
    from edgecheck.runner import host_info

    setup = session.prepare_listen(options, addresses)
    outcome = session.serve_listen(setup, fmt=fmt, out=sys.stdout, log=sys.stderr if fmt == "json" else sys.stdout,
                                   agent_version=__version__, host=host_info())
    sys.exit(outcome.exit_code)


@main.command()
@selection_options
@probe_options
@click.option("--token", envvar="EDGECHECK_TOKEN", metavar="TOKEN", help=_TOKEN_HELP + " Needed before the join.")
@click.option("--format", "fmt", envvar="EDGECHECK_FORMAT", type=click.Choice(["text", "json", "prometheus"]), default="text", show_default=True, help="Report format on stdout.")
@click.option("--output", "outputs", envvar="EDGECHECK_OUTPUT", multiple=True, type=click.Path(dir_okay=False), metavar="PATH", help="Also write the report to PATH, atomically (format from --format or the extension; once per format).")
@click.argument("nodes", nargs=-1, metavar="NODE...")
def reach(fmt: str, outputs: Tuple[str, ...], nodes: Tuple[str, ...], **options: Any) -> None:
    """From a host in the VPC (or another node): probe the plan's inbound ports on every NODE, all
    at once. Before the join `edgecheck listen` on the node proves each port with the token; with
    --phase running the node's own components answer (kubelet TLS, HTTP). Same report formats and
    exit codes as `run`."""
    from edgecheck import runner

    _report(runner.prepare_reach(options, nodes), fmt, outputs, options["verbose"])


@main.command()
@selection_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def targets(fmt: str, **options: Any) -> None:
    """Print the plan: every target `run` would check, and why. Sends no packet."""
    from edgecheck.planview import plan_json, plan_text
    from edgecheck.runner import plan_from_options, selection_params

    plan, cluster = plan_from_options(options)
    params = selection_params(plan.selection, options, cluster)
    if fmt == "json":
        click.echo(plan_json(plan, params))
        return
    for warning in plan.warnings:
        _warn(warning)
    click.echo(plan_text(plan, params), nl=False)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def regions(fmt: str) -> None:
    """List the regions the catalog knows and what it knows about each."""
    from edgecheck.catalog import load_catalog
    from edgecheck.planview import regions_json, regions_text

    catalog = load_catalog()
    click.echo(regions_json(catalog) if fmt == "json" else regions_text(catalog), nl=fmt == "json")


# ---------------------------------------------------------------------------------------------
# Entry point: one-line errors, tracebacks only with --debug
# ---------------------------------------------------------------------------------------------


def _debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("EDGECHECK_DEBUG", "").lower() in ("1", "true", "yes", "on")


def cli_entry(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        main.main(args=argv, prog_name="edgecheck", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("edgecheck: interrupted", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EdgecheckError as exc:
        click.echo(f"edgecheck: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("edgecheck: interrupted", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except BrokenPipeError:
        # A reader like `| head` went away; nothing left to say.
        sys.exit(exitcodes.NOT_READY)
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a clean line
        if _debug_requested(argv):
            import traceback

            traceback.print_exc()
            sys.exit(exitcodes.INTERNAL_ERROR)
        click.echo(
            f"edgecheck: internal error: {type(exc).__name__}: {exc} (run again with --debug for a traceback)",
            err=True,
        )
        sys.exit(exitcodes.INTERNAL_ERROR)


def main_entry() -> None:
    """The process's entry point (`python -m edgecheck`, the console script, the .pyz): cli_entry,
    then exit without finalizing the interpreter. Tearing every module and object down costs about
    50 ms (issue 17: a sixth of a healthy run) and changes nothing: the report is written, --output
    files are closed, and a probe still running past the deadline is abandoned anyway. Output is
    flushed and atexit handlers run first.

    The cyclic garbage collector's young generation runs every GC_THRESHOLD allocations, not 700:
    a run allocates a few hundred thousand objects that live until its end (modules, classes and
    functions while importing, the plan), and seventy collections scanned them to free about two
    thousand cyclic objects: 15-20 ms of a healthy run (issue 17). Reference counting frees the
    rest as before; a long `listen` or `fleet` still collects cycles, less often."""
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    try:
        cli_entry()
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the reader went away
            pass
    import atexit

    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_functions is not None:
        run_exit_functions()
    os._exit(code)


def _exit_status(code: object) -> int:
    """SystemExit's code as the process's exit status (None: 0; a message: printed, 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


# ---------------------------------------------------------------------------------------------
# Fleet agent (edgecheck/agent.py; started by systemd/edgecheck.timer)
# ---------------------------------------------------------------------------------------------


@main.command("agent")
@selection_options
@probe_options
@click.option("--state-dir", envvar="EDGECHECK_STATE_DIR", type=click.Path(file_okay=False), default=None, metavar="DIR", help="Where the last report (report.json) and the lock live. [default: $STATE_DIRECTORY or /var/lib/edgecheck]")
@click.option("--textfile", envvar="EDGECHECK_TEXTFILE", default=None, metavar="PATH", help="node_exporter textfile (*.prom); 'off' disables it. [default: /var/lib/prometheus/node-exporter/edgecheck.prom]")
def agent_command(state_dir: Optional[str], textfile: Optional[str], **options: Any) -> None:
    """Run the checks for the fleet agent (systemd timer): keep the last report as JSON and
    Prometheus metrics, log one line per run and a line when readiness changes. Default phase:
    running. Exit 0 ready, 1 not ready, 2 usage, 74 report not written, 75 another run active."""
    from edgecheck import agent, runner

    textfile_path = agent.parse_textfile(textfile)
    # Inputs are validated before the lock is taken: a usage error exits 2 having sent nothing.
    prepared = runner.prepare(options, default_phase="running")
    outcome = agent.run_agent(
        lambda: runner.run(prepared),
        state_dir=state_dir or agent.default_state_dir(os.environ),
        textfile_path=textfile_path,
    )
    agent.emit(outcome.lines)
    sys.exit(outcome.exit_code)


# ---------------------------------------------------------------------------------------------
# JSON Schema of the report (edgecheck/report/schema.json)
# ---------------------------------------------------------------------------------------------


@main.command("schema")
@click.option("--listen", "listen_summary", is_flag=True, default=False, help="The schema of `listen --format json` summaries (edgecheck/listen/v1) instead.")
def schema_command(listen_summary: bool) -> None:
    """Print the JSON Schema (draft 2020-12) of `run` and `reach` reports (`--format json`)."""
    import json as _json

    from edgecheck.report import schema as report_schema

    if listen_summary:
        from edgecheck.reach.summary import listen_schema

        click.echo(_json.dumps(listen_schema(), indent=2))
        return
    click.echo(_json.dumps(report_schema(), indent=2))
