"""The alert rules and the Grafana dashboard: they parse, and use only what the services export."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from connector.metrics import ReceiverMetrics, WorkerMetrics

OBSERVABILITY = Path(__file__).resolve().parent.parent / "deploy" / "observability"
ALERTS_PATH = OBSERVABILITY / "alerts.yaml"
RULE_RESOURCE_PATH = OBSERVABILITY / "prometheusrule.yaml"
DASHBOARD_PATH = OBSERVABILITY / "dashboard.json"
README_PATH = OBSERVABILITY / "README.md"

Exported = dict[str, frozenset[str]]

# Prometheus attaches these to every scraped series; the code cannot declare them.
TARGET_LABELS = frozenset({"job", "instance"})
# Grafana's built-in interval variables, with values PromQL accepts.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
DATASOURCE_UID = "${DS_PROMETHEUS}"
SEVERITIES = {"critical", "warning", "info"}


# -- what the services export ------------------------------------------------------------------


@cache
def exported_series() -> Exported:
    """Map every sample name the receiver and the worker expose to its label names."""
    found: dict[str, set[str]] = {}
    for metrics in (ReceiverMetrics(), WorkerMetrics()):
        _create_children(metrics)
        for family in metrics.registry.collect():
            for sample in family.samples:
                found.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in found.items()}


def _create_children(metrics: object) -> None:
    # A labelled metric exposes no sample until one of its children exists; prometheus_client
    # has no public accessor for a metric's label names.
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames and not metric._labelvalues:
            metric.labels(*("x" for _ in metric._labelnames))


# -- the PromQL checker ------------------------------------------------------------------------


def promql_problems(expr: str, exported: Exported) -> list[str]:
    """Say what is wrong with an expression: syntax, unknown metrics, unknown labels."""
    try:
        tree = promql_parser.parse(expr)
    except ValueError as exc:
        return [f"does not parse: {exc}"]
    problems: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            problems.extend(_selector_problems(node, exported))
        else:
            problems.extend(_grouping_problems(node, exported))
        return True

    promql_parser.walk(tree, visit)
    return problems


def _selector_problems(selector: Any, exported: Exported) -> list[str]:
    if selector.name is None:
        return ["a selector without a metric name"]
    if selector.name not in exported:
        return [f"unknown metric {selector.name}"]
    known = exported[selector.name] | TARGET_LABELS
    matchers = [
        *selector.matchers.matchers,
        *(m for group in selector.matchers.or_matchers for m in group),
    ]
    return [f"{selector.name} has no label {m.name}" for m in matchers if m.name not in known]


def _grouping_problems(node: Any, exported: Exported) -> list[str]:
    used = _grouping_labels(node)
    if not used:
        return []
    known = set(TARGET_LABELS)
    for name in _metric_names(node):
        known |= exported.get(name, frozenset())
    return [f"label {label} is on none of the metrics it groups" for label in used - known]


def _grouping_labels(node: Any) -> set[str]:
    """Labels named by by/without, on/ignoring and group_left/group_right."""
    modifier = getattr(node, "modifier", None)
    if isinstance(node, promql_parser.AggregateExpr) and modifier is not None:
        return set(modifier.labels)
    if isinstance(node, promql_parser.BinaryExpr) and modifier is not None:
        matching = set(modifier.matching.labels) if modifier.matching else set()
        return matching | set(modifier.group_labels or ())
    return set()


def _metric_names(node: Any) -> list[str]:
    names: list[str] = []

    def visit(child: Any) -> bool:
        if isinstance(child, promql_parser.VectorSelector) and child.name:
            names.append(child.name)
        return True

    promql_parser.walk(node, visit)
    return names


# -- the rules ---------------------------------------------------------------------------------


def load_rules() -> list[dict[str, Any]]:
    """Return every rule of alerts.yaml."""
    loaded = yaml.safe_load(ALERTS_PATH.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def rule_problems(rule: dict[str, Any], exported: Exported) -> list[str]:
    """Say what an alerting rule lacks or gets wrong."""
    problems = [f"no {key}" for key in ("alert", "expr", "for") if not rule.get(key)]
    if rule.get("labels", {}).get("severity") not in SEVERITIES:
        problems.append("severity is not one of " + ", ".join(sorted(SEVERITIES)))
    annotations = rule.get("annotations", {})
    problems += [
        f"no {key} annotation"
        for key in ("summary", "description", "runbook")
        if not annotations.get(key)
    ]
    try:
        promql_parser.parse_duration(str(rule.get("for")))
    except ValueError:
        problems.append(f"for {rule.get('for')!r} is not a duration")
    return problems + promql_problems(str(rule.get("expr", "")), exported)


def test_alert_rules_are_complete_and_use_exported_metrics() -> None:
    rules = load_rules()
    assert rules
    for rule in rules:
        assert rule_problems(rule, exported_series()) == [], rule.get("alert")


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in load_rules()]
    assert len(names) == len(set(names))


def test_prometheus_rule_resource_carries_alerts_yaml_unchanged() -> None:
    resource = yaml.safe_load(RULE_RESOURCE_PATH.read_text(encoding="utf-8"))
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"]["name"]
    assert resource["spec"] == yaml.safe_load(ALERTS_PATH.read_text(encoding="utf-8"))


@cache
def exported_buckets() -> dict[str, frozenset[str]]:
    """Map every histogram's bucket series to the `le` values the services write."""
    found: dict[str, set[str]] = {}
    for metrics in (ReceiverMetrics(), WorkerMetrics()):
        _create_children(metrics)
        for family in metrics.registry.collect():
            for sample in family.samples:
                if "le" in sample.labels:
                    found.setdefault(sample.name, set()).add(sample.labels["le"])
    return {name: frozenset(bounds) for name, bounds in found.items()}


def bucket_problems(expr: str, buckets: dict[str, frozenset[str]]) -> list[str]:
    """Say which `le` matchers select no bucket the services write (a bound "30" is "30.0")."""
    problems: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            for matcher in node.matchers.matchers:
                if matcher.name == "le" and not _selects_a_bound(matcher, buckets, node.name):
                    problems.append(f"{node.name}: no bucket le {matcher.value!r}")
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return problems


def _selects_a_bound(matcher: Any, buckets: dict[str, frozenset[str]], name: str) -> bool:
    bounds = buckets.get(name, frozenset())
    if matcher.op == promql_parser.MatchOp.Re:  # the parser has read the string's escapes
        return any(re.fullmatch(matcher.value, bound) for bound in bounds)
    return matcher.op != promql_parser.MatchOp.Equal or matcher.value in bounds


def test_alerts_select_buckets_the_services_write() -> None:
    for rule in load_rules():
        assert bucket_problems(str(rule["expr"]), exported_buckets()) == [], rule["alert"]


def test_bucket_checker_reports_a_bound_no_histogram_has() -> None:
    wrong = 'outgrow_worker_end_to_end_seconds_bucket{le="30"}'
    assert bucket_problems(wrong, exported_buckets()) == [
        "outgrow_worker_end_to_end_seconds_bucket: no bucket le '30'"
    ]
    right = 'outgrow_worker_end_to_end_seconds_bucket{le=~"30(\\\\.0)?"}'
    assert bucket_problems(right, exported_buckets()) == []
    # Read as Prometheus reads it, this asks for a backslash in the bound: none has one.
    literal = 'outgrow_worker_end_to_end_seconds_bucket{le=~"30(\\\\\\\\.0)"}'
    assert bucket_problems(literal, exported_buckets()) != []


def test_readme_explains_every_alert() -> None:
    headings = set(re.findall(r"^### (\w+)$", README_PATH.read_text(encoding="utf-8"), re.M))
    for rule in load_rules():
        assert rule["alert"] in headings
        assert f"README.md#{rule['alert'].lower()}" in rule["annotations"]["runbook"]


# -- the dashboard -----------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    """Return the dashboard as Grafana would import it."""
    loaded: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))
    return loaded


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every panel, those inside collapsed rows too."""
    top = dashboard.get("panels", [])
    return [*top, *(inner for panel in top for inner in panel.get("panels", []))]


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Give each dashboard variable a value that keeps its expressions valid PromQL."""
    values = dict(GRAFANA_BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] in {"textbox", "constant", "custom"}:
            values[variable["name"]] = str(variable["query"]).split(",")[0]
        else:  # query and datasource variables: used only in regex matchers and datasources
            values[variable["name"]] = ".*"
    return values


def expand(expr: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """Replace $name and ${name}; also return the names no variable defines."""
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            unknown.append(name)
            return "0"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr), unknown


def dashboard_problems(dashboard: dict[str, Any], exported: Exported) -> list[str]:
    """Say what is wrong with a dashboard: ids, datasources, targets and their expressions."""
    panels = all_panels(dashboard)
    ids = [str(panel.get("id")) for panel in panels]
    problems = [f"panel id {i} used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    problems += _datasource_variable_problems(dashboard)
    problems += _variable_query_problems(dashboard, exported)
    values = variable_values(dashboard)
    for panel in panels:
        problems += [f"{panel.get('title')}: {p}" for p in _panel_problems(panel, values, exported)]
    return problems


def _datasource_variable_problems(dashboard: dict[str, Any]) -> list[str]:
    variables = dashboard.get("templating", {}).get("list", [])
    wanted = {"type": "datasource", "name": "DS_PROMETHEUS", "query": "prometheus"}
    if any(all(v.get(k) == value for k, value in wanted.items()) for v in variables):
        return []
    return ["no datasource variable DS_PROMETHEUS of type prometheus"]


def _variable_query_problems(dashboard: dict[str, Any], exported: Exported) -> list[str]:
    problems: list[str] = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue
        problems += _datasource_problems(variable)
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
        if match is None:
            problems.append(f"variable {variable['name']}: not label_values(metric, label)")
            continue
        problems += promql_problems(f"{match[1]}{{{match[2]}=''}}", exported)
    return problems


def _panel_problems(panel: dict[str, Any], values: dict[str, str], exported: Exported) -> list[str]:
    if panel.get("type") == "row":
        return ["a row with targets"] if panel.get("targets") else []
    targets = panel.get("targets") or []
    problems = _datasource_problems(panel) + ([] if targets else ["no targets"])
    for target in targets:
        problems += _datasource_problems(target)
        expanded, unknown = expand(target.get("expr", ""), values)
        problems += [f"unknown variable ${name}" for name in unknown]
        problems += promql_problems(expanded, exported) if expanded else ["a target without expr"]
    return problems


def _datasource_problems(item: dict[str, Any]) -> list[str]:
    datasource = item.get("datasource") or {}
    if datasource.get("type") == "prometheus" and datasource.get("uid") == DATASOURCE_UID:
        return []
    return [f"datasource {datasource!r} is not the {DATASOURCE_UID} variable"]


def test_dashboard_is_valid_and_uses_exported_metrics() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard_problems(dashboard, exported_series()) == []


def test_dashboard_shows_every_exported_metric() -> None:
    dashboard = load_dashboard()
    values = variable_values(dashboard)
    shown = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
        for name in _metric_names(promql_parser.parse(expand(target["expr"], values)[0]))
    }
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported_series()}
    # Body sizes are for capacity planning, not operations.
    assert families - shown == {"outgrow_receiver_body_bytes"}


# -- the checkers can fail ---------------------------------------------------------------------


def test_exported_series_include_counters_histograms_and_their_labels() -> None:
    exported = exported_series()
    assert exported["outgrow_receiver_requests_total"] == {"status", "error"}
    assert "le" in exported["outgrow_worker_end_to_end_seconds_bucket"]
    assert "outgrow_worker_end_to_end_seconds_count" in exported
    assert exported["outgrow_worker_halted"] == frozenset()


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(rate(outgrow_worker_records_delivered[5m]))", "unknown metric"),
        ("sum(rate(outgrow_worker_braze_requests_total[5m])", "does not parse"),
        ('outgrow_worker_consumer_lag{partiton="0"}', "has no label partiton"),
        ('outgrow_worker_halted{stage="a" or partition="0"}', "has no label"),
        ("sum by (stage) (rate(outgrow_worker_braze_requests_total[5m]))", "label stage"),
        ("outgrow_worker_halted / on (rule) outgrow_worker_rate_limit_per_second", "label rule"),
        ("outgrow_worker_halted * on () group_left (status) vector(1)", "label status"),
        ('{__name__=~"outgrow_worker_.*"}', "without a metric name"),
    ],
)
def test_promql_checker_reports_wrong_expressions(expr: str, problem: str) -> None:
    problems = promql_problems(expr, exported_series())
    assert any(problem in p for p in problems), problems


def test_promql_checker_accepts_target_labels_and_histogram_buckets() -> None:
    buckets = 'outgrow_worker_end_to_end_seconds_bucket{instance="a"}'
    expr = f"histogram_quantile(0.99, sum by (job, le) (rate({buckets}[5m])))"
    assert promql_problems(expr, exported_series()) == []


def test_renaming_a_metric_breaks_the_alerts_and_the_dashboard() -> None:
    renamed = dict(exported_series())
    del renamed["outgrow_worker_halted"]
    alert_problems = [p for rule in load_rules() for p in rule_problems(rule, renamed)]
    assert "unknown metric outgrow_worker_halted" in alert_problems
    assert any("outgrow_worker_halted" in p for p in dashboard_problems(load_dashboard(), renamed))


def test_rule_checker_reports_missing_fields() -> None:
    problems = rule_problems(
        {"alert": "X", "expr": "outgrow_worker_halted > 0", "for": "soon"}, exported_series()
    )
    assert "severity is not one of critical, info, warning" in problems
    assert "no summary annotation" in problems
    assert "for 'soon' is not a duration" in problems


def test_dashboard_checker_reports_ids_targets_datasources_and_variables() -> None:
    datasource = {"type": "prometheus", "uid": DATASOURCE_UID}
    dashboard = {
        "templating": {"list": []},
        "panels": [
            {"id": 1, "title": "a", "datasource": datasource, "targets": []},
            {
                "id": 1,
                "title": "b",
                "datasource": {"type": "prometheus", "uid": "prod-uid"},
                "targets": [
                    {"datasource": datasource, "expr": 'outgrow_worker_halted{job=~"$jb"}'}
                ],
            },
        ],
    }
    problems = dashboard_problems(dashboard, exported_series())
    assert "panel id 1 used twice" in problems
    assert "no datasource variable DS_PROMETHEUS of type prometheus" in problems
    assert "a: no targets" in problems
    assert any(p.startswith("b: datasource") for p in problems)
    assert "b: unknown variable $jb" in problems
