"""`report` shows a latency-targeted run's recorded numbers (dense / predicted / measured ms, setting, load)."""
from secateurs.report import CheckpointRow, latency_record, markdown_table


def _row(name, summary):
    return CheckpointRow(name, "/x", 0.9, 10, 10, 100, None, None, latency_target=latency_record(summary))


def test_latency_record_and_table():
    summary = {"latency_ms_dense": 10.0, "latency_ms_predicted": 5.2, "latency_ms_measured": 5.0,
               "latency_ms_dense_predicted": 8.0,
               "latency_setting": {"batch_size": 64, "threads": 1, "runtime": "torch", "loadavg_before": [1.5, 1, 1],
                                   "loadavg_after": [2.0, 1, 1], "junk": 1}}
    rec = latency_record(summary)
    assert rec["latency_ms_measured"] == 5.0 and "junk" not in rec["setting"]
    assert latency_record({"accuracy": 0.9}) is None
    assert latency_record({"latency_ms_dense": "fast"}) is None  # wrong types dropped, not trusted
    assert latency_record(dict.fromkeys(["latency_ms_dense", "latency_setting"])) is None  # a MACs target
    table = markdown_table([_row("pruned", summary), _row("dense", {})])
    assert "Latency targets" in table
    line = next(l for l in table.splitlines() if l.startswith("| pruned | 64 |"))
    assert "| 10.000 | 5.000 | 0.500 | 5.200 | 0.650 | 1.50 -> 2.00 |" in line
    assert "Latency targets" not in markdown_table([_row("dense", {})])


def test_a_hand_edited_setting_is_dropped_not_formatted():
    """loadavg values were formatted with :.2f unchecked: a string there crashed `secateurs report`."""
    summary = {"latency_ms_dense": 10.0, "latency_ms_measured": 5.0,
               "latency_setting": {"batch_size": "64 | x", "threads": True, "runtime": "tvm", "dtype": 3,
                                   "loadavg_before": ["high", 1, 1], "loadavg_after": "2.0"}}
    rec = latency_record(summary)
    assert rec["setting"] == {} and rec["latency_ms_dense"] == 10.0
    table = markdown_table([_row("pruned", summary)])
    line = [l for l in table.split("Latency targets")[1].splitlines() if l.startswith("| pruned |")][0]
    assert line.startswith("| pruned | - | - | - | 10.000 | 5.000 | 0.500 |") and line.endswith("| - |")
    good = dict(summary, latency_setting={"batch_size": 1, "threads": 2, "runtime": "torch", "dtype": "bfloat16",
                                          "loadavg_before": [1.5, 1.0, 1.0], "loadavg_after": [2, 1, 1]})
    assert latency_record(good)["setting"] == good["latency_setting"]
