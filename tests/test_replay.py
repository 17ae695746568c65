"""Replay of recorded feeds: formats, determinism, multi-file continuity, our recorder."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.recording import Recorder, iter_frames, read_info
from bot.errors import ConfigError
from bot.events import Side
from bot.replay import replay_summary, resolve_source, run_replay
from bot.settings import load_settings
from tests.differential import stable

ROOT = Path(__file__).resolve().parents[1]


def replay_json(*args: str, tmp_path: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMBOT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "replay", *args, "--json", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints exactly one JSON object"
    assert "\r" not in proc.stderr, "no progress bar on a non-terminal"
    result: dict[str, Any] = json.loads(lines[0])
    return result


REQUIRED = ("messages", "book_updates", "trades", "orders_sent", "fills", "pnl",
            "final_inventory", "final_best_bid", "final_best_ask", "sequence_gaps", "resyncs",
            "elapsed_s", "messages_per_s")


def test_replay_usdm_capture_is_complete_and_deterministic(
    shared_data: Path, tmp_path: Path
) -> None:
    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    first = replay_json(str(path), tmp_path=tmp_path / "a")
    second = replay_json(str(path), tmp_path=tmp_path / "b")

    for key in REQUIRED:
        assert key in first
    assert first["messages"] == 93_954
    assert first["book_updates"] == 6_548  # the snapshot and 6,547 applied diffs
    assert first["trades"] == 21_313
    assert first["sequence_gaps"] == 0
    assert first["orders_sent"] > 0
    assert stable(first) == stable(second)
    run = Path(first["run_dir"])
    assert (run / "summary.json").is_file() and (run / "journal.sqlite").is_file()


def test_final_book_matches_the_last_book_ticker(shared_data: Path) -> None:
    from adapters.binance import parse_book_ticker

    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    source = resolve_source([path], None, None)
    result = run_replay(source, load_settings(None, {}, environ={}), None)
    last_u = result.engine.book.sequence
    tickers = {}
    for frame in iter_frames([path]):
        if "@bookTicker" in frame.data[:40]:
            parsed = parse_book_ticker(frame.data)
            if parsed is not None:
                tickers[parsed[0]] = parsed[1:]
    matching = [u for u in tickers if u == last_u]
    if matching:
        assert tickers[last_u] == (result.engine.book.best_bid, result.engine.book.best_ask)
    assert result.engine.book.valid


def test_replay_spanning_two_files_of_one_connection(shared_data: Path, tmp_path: Path) -> None:
    spot = shared_data / "hftbacktest" / "spot"
    paths = [str(spot / "btcusdt_20240808.gz"), str(spot / "btcusdt_20240809.gz")]
    first = replay_json(*paths, tmp_path=tmp_path / "a")
    second = replay_json(*paths, tmp_path=tmp_path / "b")

    assert first["messages"] == 41_249 + 58_325
    assert first["sequence_gaps"] == 0
    assert first["book_updates"] == 6_494  # snapshot + 6,493 applied diffs across both files
    assert stable(first) == stable(second)


def test_second_file_alone_has_no_snapshot_and_never_quotes(
    shared_data: Path, tmp_path: Path
) -> None:
    path = shared_data / "hftbacktest" / "spot" / "btcusdt_20240809.gz"
    source = resolve_source([path], None, None)
    settings = load_settings(None, {"market": {"tick_size": 0.01, "lot_size": 0.00001}},
                             environ={})
    result = run_replay(source, settings, None)
    assert result.engine.stats.book_updates == 0
    assert result.engine.stats.orders_sent == 0


@pytest.mark.parametrize(
    ("name", "venue", "symbol"),
    [
        ("BINANCE.jsonl.gz", "binance", "NKNUSDT"),
        ("BINANCE_FUTURES.jsonl.gz", "binance-usdm", "SUSHIUSDT"),
        ("COINBASE.jsonl.gz", "coinbase", "BTC-USD"),
        ("BYBIT.jsonl.gz", "bybit", "BTCUSDT"),
        ("OKX.jsonl.gz", "okx", "BTC-USD-220527"),
        ("KRAKEN.jsonl.gz", "kraken-v1", "KSM/BTC"),
    ],
)
def test_replay_cryptofeed_sessions(shared_data: Path, name: str, venue: str,
                                    symbol: str) -> None:
    path = shared_data / "cryptofeed" / name
    source = resolve_source([path], None, None)
    assert (source.venue, source.symbol) == (venue, symbol)
    result = run_replay(source, load_settings(None, {}, environ={}), None)
    stats = result.router.stats()
    assert stats.gaps == 0
    assert stats.checksum_errors == 0
    assert result.engine.stats.book_updates > 0
    assert result.engine.book.valid


def test_replay_cryptofeed_picks_the_requested_symbol(shared_data: Path) -> None:
    source = resolve_source([shared_data / "cryptofeed" / "BYBIT.jsonl.gz"], None, "ETHUSDT")
    assert source.symbol == "ETHUSDT"


def test_unreadable_recording_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(Exception, match=r"cannot read|not a recording"):
        resolve_source([bad], None, None)
    with pytest.raises(ConfigError):
        resolve_source([tmp_path / "missing.gz"], None, None)


def test_recordings_given_out_of_time_order_are_refused(shared_data: Path,
                                                        tmp_path: Path) -> None:
    spot = shared_data / "hftbacktest" / "spot"
    first, second = spot / "btcusdt_20240808.gz", spot / "btcusdt_20240809.gz"
    assert resolve_source([first, second], None, None).paths == (first, second)
    with pytest.raises(ConfigError, match=r"out of order: .*btcusdt_20240808.gz does not start "
                                          r"after .*btcusdt_20240809.gz"):
        resolve_source([second, first], None, None)
    with pytest.raises(ConfigError, match="out of order"):
        resolve_source([first, first], "binance", "BTCUSDT")
    # Rotated parts: part10 sorts before part2 in a shell glob.
    recorder = Recorder(tmp_path / "rec.jsonl.gz", {"venue": "binance", "symbol": "BTCUSDT",
                                                    "streams": []},
                        rotate_bytes=200, rotate_s=3600)
    for i in range(40):
        recorder.write(1_000 + i, "ws", "ws.1", json.dumps({"i": i, "pad": "x" * 50}))
    recorder.close()
    assert len(recorder.parts) >= 10
    assert resolve_source(recorder.parts, None, None).paths == tuple(recorder.parts)
    with pytest.raises(ConfigError, match=r"rec\.part2\.jsonl\.gz does not start after "
                                          r".*rec\.part1[0-9]\.jsonl\.gz"):
        resolve_source(sorted(recorder.parts, key=str), None, None)
    # The CLI says so and writes nothing.
    out = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "bot.cli", "replay", str(second), str(first),
                           "--json", "--out", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "out of order" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_directory_is_not_a_recording(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a file"):
        resolve_source([tmp_path], None, None)


def test_a_symbol_the_venue_refuses_is_a_config_error_before_anything_runs(
    shared_data: Path,
) -> None:
    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    with pytest.raises(ConfigError, match="--symbol"):
        resolve_source([path], "binance-usdm", "???")


def test_a_recording_cut_short_replays_up_to_the_cut_and_counts_it(
    shared_data: Path, tmp_path: Path
) -> None:
    # A recorder killed mid-write leaves a gzip stream without its end.
    original = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    cut = tmp_path / "cut.gz"
    cut.write_bytes(original.read_bytes()[:150_000])
    whole = list(iter_frames([original]))
    frames = list(iter_frames([cut]))
    assert frames[-1].kind == "bad" and "cut short" in frames[-1].data
    assert [f.data for f in frames[:-1]] == [f.data for f in whole[:len(frames) - 1]]
    assert len(frames) > 1000

    source = resolve_source([cut], "binance-usdm", "BTCUSDT")
    settings = load_settings(None, {}, environ={})
    summary = replay_summary(run_replay(source, settings, None), source, settings, None)
    assert summary["malformed"] == 1
    assert summary["messages"] > 1000 and summary["orders_sent"] > 0

    # Our own format and cryptofeed's likewise.
    ours = tmp_path / "ours.jsonl.gz"
    recorder = Recorder(ours, {"venue": "binance-usdm", "symbol": "BTCUSDT", "streams": []})
    for frame in whole[:3000]:
        recorder.write(frame.ts_local_ns, frame.kind, frame.conn, frame.data)
    recorder.close()
    ours.write_bytes(ours.read_bytes()[:-2000])
    read = list(iter_frames([ours]))
    assert read[-1].kind == "bad" and 1000 < len(read) < 3000
    cryptofeed = shared_data / "cryptofeed" / "BYBIT.jsonl.gz"
    cut_cf = tmp_path / "BYBIT.jsonl.gz"
    cut_cf.write_bytes(cryptofeed.read_bytes()[:200_000])
    assert sum(f.kind == "bad" for f in iter_frames([cut_cf])) == 1


def test_recorder_round_trips_frames_and_rotates(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl.gz"
    recorder = Recorder(out, {"venue": "binance", "symbol": "BTCUSDT", "streams": []},
                        rotate_bytes=2_000, rotate_s=3600)
    frames = [(1_000 + i, "ws", "ws.1", json.dumps({"i": i, "pad": "x" * 50}))
              for i in range(100)]
    for frame in frames:
        recorder.write(*frame)
    recorder.close()

    assert len(recorder.parts) > 1
    assert recorder.parts[0] == out
    info = read_info(out)
    assert (info.format, info.venue, info.symbol) == ("mmbot", "binance", "BTCUSDT")
    back = [(f.ts_local_ns, f.kind, f.conn, f.data) for f in iter_frames(recorder.parts)]
    assert back == frames
    with gzip.open(recorder.parts[1], "rt") as fh:
        header = json.loads(fh.readline())
    assert header["part"] == 2 and header["format"] == "mmbot-recording"


def test_our_recording_replays_like_the_original(shared_data: Path, tmp_path: Path) -> None:
    original = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    out = tmp_path / "copy.jsonl.gz"
    recorder = Recorder(out, {"venue": "binance-usdm", "symbol": "BTCUSDT", "streams": []})
    for frame in iter_frames([original]):
        recorder.write(frame.ts_local_ns, frame.kind, frame.conn, frame.data)
    recorder.close()
    settings = load_settings(None, {}, environ={})

    a = run_replay(resolve_source([original], None, None), settings, None)
    b = run_replay(resolve_source([out], None, None), settings, None)

    sa = replay_summary(a, resolve_source([original], None, None), settings, None)
    sb = replay_summary(b, resolve_source([out], None, None), settings, None)
    assert stable(sa) == stable(sb)


@pytest.mark.parametrize(("files", "config"), [
    (("usdm/btcusdt_20240808.gz",), None),
    (("usdm/btcusdt_20240808.gz",), "replay-btcusdt.toml"),
    (("spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"), None),
])
def test_touch_first_booking_gives_the_same_run_as_booking_whole_deltas(
    shared_data: Path, files: tuple[str, ...], config: str | None,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapters.venues
    import bot.engine

    paths = [shared_data / "hftbacktest" / name for name in files]
    source = resolve_source(paths, None, None)
    settings = load_settings(ROOT / "config" / config if config else None, {}, environ={})
    split = run_replay(source, settings, None)
    assert split.router.stats().book_events > 0
    # Neither the parser nor the engine splits: every delta is booked whole, then quoted on.
    monkeypatch.setattr(adapters.venues, "TOUCH_LEVELS", 0)
    monkeypatch.setattr(bot.engine, "TOUCH_FIRST_LEVELS", 10**9)
    whole = run_replay(source, settings, None)

    a = replay_summary(split, source, settings, None)
    b = replay_summary(whole, source, settings, None)
    assert a["orders_sent"] > 0
    assert stable(a) == stable(b)
    assert split.engine.book.depth(Side.BUY, 10**6) == whole.engine.book.depth(Side.BUY, 10**6)
    assert split.engine.book.depth(Side.SELL, 10**6) == whole.engine.book.depth(Side.SELL, 10**6)
    assert split.engine.portfolio.position == whole.engine.portfolio.position
    assert split.engine.portfolio.cash == whole.engine.portfolio.cash


def test_bench_reports_throughput_latency_and_memory(shared_data: Path) -> None:
    from bot.bench import bench_command

    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    result = bench_command([path], None)
    assert result["messages"] == 93_954
    assert result["messages_per_s"] > 0
    lat = result["tick_to_quote_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert lat["samples"] > 100
    assert result["peak_rss_mb"] > 0
    host = result["host"]  # how often the host took the CPU around the run
    assert host["probe_s"] == 0.2
    assert host["stalls_per_s"] >= 0 and 0 <= host["stalled_pct"] < 100
    from bot.native import cbook

    assert result["compiled"] is (cbook is not None)  # says what was measured


@pytest.mark.parametrize("config", [None, "replay-btcusdt.toml"])
def test_reusing_unchanged_decisions_gives_the_same_run(
    shared_data: Path, config: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.app

    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    source = resolve_source([path], None, None)
    settings = load_settings(ROOT / "config" / config if config else None, {}, environ={})
    assert bot.app.time_invariant(settings)

    def summary() -> dict[str, Any]:
        result = run_replay(source, settings, None)
        full = replay_summary(result, source, settings, None)
        return stable(full)

    cached = summary()
    monkeypatch.setattr(bot.app, "time_invariant", lambda _settings: False)
    assert summary() == cached


def test_a_stopped_replay_ends_at_a_frame_boundary_and_says_so(shared_data: Path) -> None:
    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    source = resolve_source([path], None, None)
    settings = load_settings(None, {}, environ={})
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 5_000

    result = run_replay(source, settings, None, stop=stop)
    assert result.interrupted
    assert result.messages == 5_000
    assert result.engine.stats.fills > 0
    assert not result.engine.orders.orders, "the run was finished: every order cancelled"
    assert replay_summary(result, source, settings, None)["interrupted"] is True
    whole = run_replay(source, settings, None)
    assert not whole.interrupted and whole.messages == 93_954


def test_ctrl_c_stops_a_paced_replay_with_partial_results(shared_data: Path,
                                                          tmp_path: Path) -> None:
    import signal
    import time

    path = shared_data / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
    out = tmp_path / "runs"
    # SIGINT as a terminal sends it (a background job of a script would ignore it).
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "replay", str(path), "--speed", "1", "--json",
         "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (out.exists() and any(out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a second or so of the recording, paced
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 1, stderr
    assert "replay interrupted after" in stderr and "Traceback" not in stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    assert 0 < summary["messages"] < 93_954
    assert "benchmark" not in summary  # a whole-recording benchmark would not compare
    (run,) = out.iterdir()
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True
    # The journal was closed in order: nothing beside it, even after the report read it.
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("journal")) == [
        "journal.sqlite"]
