"""ops/: the Grafana dashboard and the Prometheus alert rules, checked without a server.

Dashboards and alerts depend on the metric names of ops.md's Metrics table, so
every PromQL expression may name only those (plus the replica gauges). With
promtool installed (Debian's `prometheus` package; `make rules-check`), the rules
also go through `promtool check rules` and the unit tests of alerts.test.yml,
and every dashboard query through promtool's parser.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import ROOT

OPS = ROOT / "ops"
RULES = OPS / "prometheus" / "alerts.yml"
RULES_TESTS = OPS / "prometheus" / "alerts.test.yml"
DASHBOARD = OPS / "grafana" / "deals-service.json"
README = OPS / "README.md"

# ops.md's Metrics table, name -> type: fixed, dashboards and alerts depend on it.
SPEC_METRICS = {
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
    "db_queries_per_request": "histogram",
    "db_query_duration_seconds": "histogram",
    "db_query_errors_total": "counter",
    "db_pool_connections": "gauge",
    "db_pool_max_size": "gauge",
    "db_pool_waiters": "gauge",
    "stats_cache_requests_total": "counter",
    "events_written_total": "counter",
}
# The read replicas' gauges (service/api/replica_metrics.py).
REPLICA_METRICS = {"db_replica_lag_seconds": "gauge", "db_replica_up": "gauge"}
METRICS = SPEC_METRICS | REPLICA_METRICS


def series_names() -> set[str]:
    """What a query can select: a histogram only through its _bucket, _sum and _count."""
    names: set[str] = set()
    for name, kind in METRICS.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_sum", "holt_winters", "hour", "idelta", "increase",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar",
    "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
    "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}  # fmt: skip
PROMQL_KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
}  # fmt: skip

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][\w:]*")


def identifiers(expr: str) -> set[str]:
    """The names a PromQL expression uses, without strings, label matchers and label lists."""
    text = STRING.sub(" ", expr)
    text = GRAFANA_VARIABLE.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = GROUPING.sub(" ", text)
    return set(IDENTIFIER.findall(text))


def unknown_names(expr: str) -> set[str]:
    """Metric and function names are case-sensitive; keywords and aggregations are not."""
    known = series_names() | PROMQL_FUNCTIONS
    return {
        name
        for name in identifiers(expr)
        if name not in known and name.lower() not in PROMQL_KEYWORDS
    }


def metric_names(expr: str) -> set[str]:
    return identifiers(expr) & series_names()


def base_metric(series: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if series.endswith(suffix) and METRICS.get(series.removesuffix(suffix)) == "histogram":
            return series.removesuffix(suffix)
    return series


# --- the extractor itself ------------------------------------------------------------


def test_identifiers_skip_labels_strings_and_variables() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket"
        '{route=~"$route", instance=~"$instance"}[$__rate_interval]))) > 0.5'
    )
    assert identifiers(expr) == {
        "histogram_quantile",
        "sum",
        "rate",
        "http_request_duration_seconds_bucket",
    }
    assert unknown_names(expr) == set()
    assert unknown_names("rate(http_request_total[5m])") == {"http_request_total"}
    assert unknown_names("SUM(HTTP_REQUESTS_TOTAL)") == {"HTTP_REQUESTS_TOTAL"}
    assert unknown_names("rate(http_request_duration_seconds[5m])") == {
        "http_request_duration_seconds"
    }, "a histogram has no series of its bare name"


# --- alert rules ---------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    found = [rule for group in document["groups"] for rule in group["rules"]]
    assert found
    return found


def alert(name: str, severity: str = "warning") -> dict[str, Any]:
    matching = [
        r for r in rules() if r.get("alert") == name and r["labels"]["severity"] == severity
    ]
    assert len(matching) == 1, (name, severity, matching)
    return matching[0]


def threshold(rule: dict[str, Any]) -> tuple[str, float]:
    """The comparison that ends the expression: ('>', 0.01)."""
    match = re.search(r"(>|<|==|>=|<=|!=)\s*([0-9.]+)\s*$", rule["expr"].strip())
    assert match, rule["expr"]
    return match.group(1), float(match.group(2))


def test_rule_expressions_use_only_known_metrics() -> None:
    for rule in rules():
        assert unknown_names(rule["expr"]) == set(), (rule.get("alert"), rule["expr"])
        assert metric_names(rule["expr"]), rule["expr"]


def test_every_rule_has_severity_summary_description_and_a_runbook_in_ops_readme() -> None:
    headings = {
        github_anchor(line) for line in README.read_text().splitlines() if line.startswith("#")
    }
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule
        assert annotations["description"].strip(), rule
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "ops/README.md", rule
        assert anchor in headings, f"{rule['alert']}: no heading for #{anchor} in ops/README.md"


def github_anchor(heading: str) -> str:
    text = heading.lstrip("#").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@pytest.mark.parametrize(
    ("name", "severity", "op", "value", "duration"),
    [
        ("DealsHttp5xxRatioHigh", "warning", ">", 0.01, "5m"),
        ("DealsHttp5xxRatioHigh", "critical", ">", 0.05, "5m"),
        ("DealsHttpLatencyP99High", "warning", ">", 0.5, "10m"),
        ("DealsDbPoolSaturated", "warning", ">", 0.9, "5m"),
        ("DealsDbPoolWaiters", "warning", ">", 0, "2m"),
        ("DealsReplicaLagging", "warning", ">", 5, "2m"),  # REPLICA_MAX_LAG_SECONDS' default
        ("DealsReplicaDown", "warning", "==", 0, "1m"),
    ],
)
def test_alert_thresholds(name: str, severity: str, op: str, value: float, duration: str) -> None:
    rule = alert(name, severity)
    assert threshold(rule) == (op, value)
    assert rule["for"] == duration


def test_alerts_measure_what_their_names_say() -> None:
    ratio = alert("DealsHttp5xxRatioHigh")["expr"]
    assert 'status=~"5.."' in ratio
    assert ratio.count("[5m]") == 2
    latency = alert("DealsHttpLatencyP99High")["expr"]
    assert "histogram_quantile(0.99" in latency
    assert metric_names(latency) == {"http_request_duration_seconds_bucket"}
    pool = alert("DealsDbPoolSaturated")["expr"]
    assert 'db_pool_connections{state="in_use"}' in pool
    assert "/" in pool
    assert metric_names(pool) == {"db_pool_connections", "db_pool_max_size"}
    assert metric_names(alert("DealsDbPoolWaiters")["expr"]) == {"db_pool_waiters"}
    assert metric_names(alert("DealsReplicaLagging")["expr"]) == {"db_replica_lag_seconds"}
    assert metric_names(alert("DealsReplicaDown")["expr"]) == {"db_replica_up"}


# --- dashboard -----------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    found = [p for p in dashboard()["panels"] if p["type"] != "row"]
    assert found
    return found


def test_dashboard_variables() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for name in ("route", "instance"):
        assert variables[name]["type"] == "query"
        query = variables[name]["query"]["query"]
        match = re.fullmatch(r"label_values\((\w+)(\{[^}]*\})?, (\w+)\)", query)
        assert match, query
        assert match.group(1) in series_names(), query
        assert match.group(3) == name, query


def test_every_panel_has_a_title_and_targets_on_the_datasource_variable() -> None:
    ds = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["title"].strip(), panel
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == ds, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ds, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_queries_use_only_known_metrics_and_cover_them_all() -> None:
    used: set[str] = set()
    for panel in panels():
        for target in panel["targets"]:
            assert unknown_names(target["expr"]) == set(), (panel["title"], target["expr"])
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            used |= {base_metric(name) for name in names}
    assert used == set(METRICS)


def test_dashboard_queries_filter_on_the_variables() -> None:
    for panel in panels():
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])
            if any(
                re.search(rf"\b{m}", target["expr"]) for m in ("http_", "db_queries_per_request")
            ):
                assert 'route=~"$route"' in target["expr"], (panel["title"], target["expr"])
            assert "[5m]" not in target["expr"], "use $__rate_interval"


def test_dashboard_has_the_panels_operators_look_for() -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels()}
    latency = exprs["Latency p50 / p95 / p99 by route"]
    for q in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({q}, sum by (route, le) (rate(http_request_duration_seconds_bucket"
            in latency
        )
    assert "status_class" in exprs["Requests by route and status class"]
    assert 'status=~"5.."' in exprs["5xx ratio by route"]
    assert "by (query, le)" in exprs["Slowest named queries (p99)"]
    assert "by (sqlstate" in exprs["Query errors by SQLSTATE"]
    assert "db_pool_max_size" in exprs["Pool: in use vs max"]
    assert 'result="hit"' in exprs["Stats cache hit ratio"]
    assert "db_replica_lag_seconds" in exprs["Replica lag"]


# --- ops/README.md -------------------------------------------------------------------


def test_ops_readme_lists_the_metric_names() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|", README.read_text(), flags=re.MULTILINE)
    assert dict(rows) == METRICS


def test_the_service_exports_the_replica_gauges_the_rules_read() -> None:
    from service.api.replica_metrics import REPLICA_LAG, REPLICA_UP

    exported = {
        gauge._name: (gauge._type, gauge._labelnames) for gauge in (REPLICA_LAG, REPLICA_UP)
    }
    assert exported == {name: (kind, ("replica",)) for name, kind in REPLICA_METRICS.items()}


# --- promtool, when installed ----------------------------------------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (make rules-check installs it)"
)


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@needs_promtool
def test_promtool_check_rules() -> None:
    assert "SUCCESS" in promtool("check", "rules", str(RULES))


@needs_promtool
def test_promtool_unit_tests_fire_the_alerts() -> None:
    tests = yaml.safe_load(RULES_TESTS.read_text())
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert {"DealsHttp5xxRatioHigh", "DealsDbPoolSaturated"} <= fired
    assert "SUCCESS" in promtool("test", "rules", str(RULES_TESTS))


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query, its Grafana variables replaced, as a recording rule for promtool's parser."""
    substitutions = {"$__rate_interval": "5m", "$route": ".*", "$instance": ".*"}
    recorded = []
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in substitutions.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr.replace("${1}", ""), expr
            recorded.append(
                {"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr}
            )
    rules_file = tmp_path / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    promtool("check", "rules", str(rules_file))
