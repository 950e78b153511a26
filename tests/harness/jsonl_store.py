"""Readers of the JSONL file store (MLTRACE_FILE: one Trace.to_json() per
line; a later line whose trace_metadata has "mltrace.update" carries an
assessment or a tag change for a trace written before it).

Two views: plain dicts (`read_dicts`, `attr`, `root_and_child`: no MLflow
needed) and MLflow's own entities (`read_traces`, `merge_jsonl`: each line
through mlflow.entities.Trace.from_json, the documented reader).
"""
import json


def read_dicts(path):
    """(the file's text, [one dict per line])."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text, [json.loads(line) for line in text.splitlines()]


def attr(span, key):
    """A span attribute of a dict trace, decoded (attributes hold JSON text)."""
    v = span["attributes"].get(key)
    return None if v is None else json.loads(v)


def root_and_child(tr):
    """(the root span, its first child or None) of a dict trace."""
    root = next(s for s in tr["data"]["spans"] if s["parent_span_id"] is None)
    kids = [s for s in tr["data"]["spans"] if s["parent_span_id"] == root["span_id"]]
    return root, kids[0] if kids else None


def read_traces(path):
    """({trace_id: Trace} of the trace lines, first one per id, [update
    lines as Trace] in file order), with Trace.from_json."""
    from mlflow.entities import Trace

    traces, updates = {}, []
    for line in open(path, encoding="utf-8"):
        tr = Trace.from_json(line)
        if tr.info.trace_metadata.get("mltrace.update"):
            updates.append(tr)
        else:
            traces.setdefault(tr.info.trace_id, tr)
    return traces, updates


def merge_jsonl(path):
    """The documented reader: Trace.from_json per line, update lines
    (trace_metadata "mltrace.update") merged into their trace in file order.
    Returns (traces by id, the update lines)."""
    traces, updates = read_traces(path)
    for u in updates:
        base = traces.get(u.info.trace_id)
        if base is None:
            continue
        kind = u.info.trace_metadata["mltrace.update"]
        if kind == "assessment":
            base.info.assessments.extend(u.info.assessments)
        elif kind == "set_tag":
            base.info.tags.update(u.info.tags)
        elif kind == "delete_tag":
            base.info.tags.pop(u.info.trace_metadata["mltrace.deletedTag"], None)
    return traces, updates
