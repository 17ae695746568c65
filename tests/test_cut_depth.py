"""Reading a Binance depth diff without a JSON decoder, on real and broken text.

``cut_depth`` takes the fields and the level-array spans of Binance's compact layout, and
``split_depth`` (what the parser calls) splits those arrays too; for any other text both
return None and the parser decodes the frame with msgspec, which decides. So: the compiled
readers must equal their references on everything, agree with ``json.loads`` where they
answer, and a parser that never takes the fast path must give the same events.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adapters.binance
from adapters.binance import BinanceParser, Market, is_rest_snapshot
from bot.errors import DataError
from bot.events import BookDelta, DeferredBookDelta
from bot.native import cbook, py_cut_depth, py_split_depth
from tests.test_binance import CM_BTC, SPOT_BTC, USDM_BTC, hft_lines

# A real USD-M diff (levels trimmed), the shape every test below starts from.
FRAME = ('{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1723161257460,'
         '"T":1723161257451,"s":"BTCUSDT","U":4925297372539,"u":4925297372606,'
         '"pu":4925297372534,"b":[["61790.10","0.002"],["61794.40","1.236"]],'
         '"a":[["61794.50","3.421"],["61801.40","0.000"]]}}')


def outcome(call: Any) -> Any:
    try:
        return call()
    except ValueError as exc:
        return f"ValueError: {exc}"


def cut_both(text: str) -> Any:
    """The reference's head, checked against the compiled reader's; split_depth's too."""
    ours = py_cut_depth(text)
    split = outcome(lambda: py_split_depth(text, 2))
    if cbook is not None:
        assert cbook.cut_depth(text) == ours
        # A LevelRun equals the tuple of its levels: the split compares as it is.
        assert outcome(lambda: cbook.split_depth(text, 2)) == split
    if ours is None:
        assert split is None
    elif not isinstance(split, str):
        assert split[:5] == ours[:5]
    return ours


def agrees_with_json(text: str, cut: Any) -> None:
    """Where the reader answers, it says what json.loads reads.

    The fields are the head's (the frame with empty arrays must be valid JSON); the spans cut
    the text exactly into head, bids, asks and the closing brackets. The arrays themselves are
    not read here (the level readers check them), so they are compared only when valid.
    """
    symbol, ts_ms, first_id, final_id, prev_id, b0, b1, a0, a1 = cut
    data = json.loads(text[:b0] + '[],"a":[]}}')["data"]
    assert (symbol, ts_ms, first_id, final_id, prev_id) == \
        (data["s"], data["E"], data["U"], data["u"], data.get("pu", -1))
    assert list(data)[-2:] == ["b", "a"]
    assert text == text[:b0] + text[b0:b1] + ',"a":' + text[a0:a1] + "}}"
    assert text[b0] == "[" and text[a0] == "["
    try:
        whole = json.loads(text)["data"]
    except ValueError:
        return
    assert (json.loads(text[b0:b1]), json.loads(text[a0:a1])) == (whole["b"], whole["a"])


def test_the_compact_layout_is_read_field_by_field() -> None:
    cut = cut_both(FRAME)
    assert cut[:5] == ("BTCUSDT", 1723161257460, 4925297372539, 4925297372606, 4925297372534)
    agrees_with_json(FRAME, cut)
    spot = FRAME.replace('"pu":4925297372534,', "").replace('"T":1723161257451,', "")
    assert cut_both(spot)[4] == -1  # spot has no pu
    empty = FRAME.split(',"b":')[0] + ',"b":[],"a":[]}}'
    agrees_with_json(empty, cut_both(empty))


@pytest.mark.parametrize("text", [
    FRAME.replace('"E":1723161257460', '"E":"1723161257460"'),  # a string where an int goes
    FRAME.replace('"s":"BTCUSDT"', '"s":7'),                    # an int where a string goes
    FRAME.replace('"E":1723161257460', '"E":1.7e12'),           # not an integer
    FRAME.replace('"E":1723161257460', '"E":01723161257460'),   # a leading zero
    FRAME.replace('"E":1723161257460', '"E":1234567890123456789'),  # 19 digits
    FRAME.replace('"E":1723161257460', '"E":-'),
    FRAME.replace('"E":1723161257460,', ""),                    # a field missing
    FRAME.replace('"U":', '"U":1,"U":'),                        # a field twice
    FRAME.replace('"s":"BTCUSDT"', '"s":"BTC\\u0055SDT"'),      # an escape
    FRAME.replace('"e":"depthUpdate"', '"e":"depth\x01Update"'),  # a control character
    FRAME.replace('"e":"depthUpdate"', '"e":true'),             # another value type
    FRAME.replace('"e":"depthUpdate"', '"e":{"x":1}'),
    FRAME.replace('"s":"BTCUSDT"', '"s":"BTCUSDT\u00e9"'),      # not ASCII
    FRAME.replace('"E":', '"E": '),                             # whitespace
    FRAME.replace('{"stream"', '{ "stream"'),
    FRAME.replace(',"data":{', ',"x":1,"data":{'),              # a key between
    FRAME[:-2] + ',"x":[1]}}',                                  # something after the asks
    FRAME[:-1],                                                 # cut short
    FRAME.replace('],"a":[', '],"A":['),
    FRAME.replace('"b":[["61790.10"', '"b":{["61790.10"'),
    '{"stream":"x","data":{"a":[],"b":[]}}',
    FRAME.replace('"e":"depthUpdate"', '"a":"depthUpdate"'),      # "a" twice
    '{"result":null,"id":1}',
    "",
])
def test_anything_but_the_compact_layout_is_left_to_the_decoder(text: str) -> None:
    assert cut_both(text) is None


def test_an_int_field_may_be_negative_and_the_symbol_anything_plain() -> None:
    text = FRAME.replace('"pu":4925297372534', '"pu":-1').replace('"BTCUSDT"', '"a[]:,b"')
    cut = cut_both(text)
    assert cut is not None and cut[4] == -1
    agrees_with_json(text, cut)


@pytest.mark.parametrize(("files", "market"), [(USDM_BTC, "usdm"), (SPOT_BTC, "spot"),
                                               (CM_BTC, "coinm")])
def test_every_recorded_diff_is_read_as_json_reads_it(
    shared_data: Path, files: tuple[str, ...], market: Market
) -> None:
    read = 0
    for _, raw in hft_lines(shared_data, files):
        if "@depth" not in raw[:40]:  # trades, book tickers, REST snapshots
            assert cut_both(raw) is None
            continue
        cut = cut_both(raw)
        assert cut is not None, raw[:200]
        agrees_with_json(raw, cut)
        read += 1
    assert read > 1000


# Head edits: characters that matter to the grammar, inserted, deleted or replaced anywhere.
_ALPHABET = st.sampled_from(list('"{}[],:\\ -.0123456789eEabsSpuUT\x01\u00e9'))
edits = st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace"]),
                           st.integers(0, len(FRAME) - 1), _ALPHABET), min_size=1, max_size=3)


def edited(text: str, ops: list[tuple[str, int, str]]) -> str:
    for op, at, char in ops:
        at %= max(len(text), 1)
        if op == "insert":
            text = text[:at] + char + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + char + text[at + 1:]
    return text


@settings(max_examples=1500, deadline=None)
@given(ops=edits)
def test_edited_frames_read_as_the_reference_and_as_json_does(
    ops: list[tuple[str, int, str]]
) -> None:
    text = edited(FRAME, ops)
    cut = cut_both(text)
    if cut is not None:
        agrees_with_json(text, cut)


# Generated heads: any order of fields, of any JSON type, with the arrays last.
_values = st.one_of(
    st.integers(-10**19, 10**19), st.text(max_size=6), st.floats(allow_nan=False),
    st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
)
_fields = st.lists(st.tuples(st.sampled_from(["s", "E", "U", "u", "pu", "e", "T", "ps", "x"]),
                             _values), max_size=9)


@settings(max_examples=600, deadline=None)
@given(fields=_fields, symbol=st.text(max_size=8), ints=st.tuples(*[st.integers(0, 10**15)] * 3))
def test_generated_heads_read_as_the_reference_and_as_json_does(
    fields: list[tuple[str, Any]], symbol: str, ints: tuple[int, int, int]
) -> None:
    base = [("s", symbol), ("E", ints[0]), ("U", ints[1]), ("u", ints[2])]
    head = ",".join(f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}"
                    for k, v in base + fields)
    text = ('{"stream":"btcusdt@depth","data":{' + head
            + ',"b":[["1.5","2"]],"a":[["1.6","0"],["1.7","3"]]}}')
    cut = cut_both(text)
    if cut is not None:
        agrees_with_json(text, cut)


def whole(event: Any) -> Any:
    """A split diff as the diff it stands for (or the corruption its deep part holds)."""
    if type(event) is not DeferredBookDelta:
        return event
    try:
        return event.whole()
    except DataError as exc:
        return event.near, str(exc)


def parse_one(parser: BinanceParser, raw: str, ts: int, *, decoder: bool = False
              ) -> tuple[list[Any], Any, int, Any]:
    """Feed one frame to a copy of ``parser``: its events, stats and sync state after. With
    ``decoder``, the copy has no compiled route either (``DepthRoute`` reads the compact
    layout as split_depth does)."""
    parser = copy.deepcopy(parser)
    if decoder:
        parser._route = None
    events = [whole(e) for e in parser.on_message(raw, ts)]
    return events, parser.stats, parser.last_update_id, parser.resync


@pytest.mark.parametrize("market", ["usdm", "spot"])
def test_the_decoder_path_gives_the_same_events(
    shared_data: Path, market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real diffs, whole and with an edit in the head or the first levels: a parser that
    reads them with cut_depth and one that leaves every frame to the decoder agree."""
    files = USDM_BTC if market == "usdm" else SPOT_BTC[:1]
    parser = BinanceParser("BTCUSDT", market, 0 if market == "usdm" else 100, touch_levels=16)
    fast_cut = adapters.binance.split_depth
    rng = random.Random(7)
    compared = malformed = deferred = 0
    for k, (ts, raw) in enumerate(hft_lines(shared_data, files)[:40_000]):
        if is_rest_snapshot(raw):
            parser.on_snapshot(raw, ts)
            continue
        if k % 3 == 0 and "@depth" in raw[:40] and parser.resync.name == "NONE":
            for text in (raw, edited(raw, [(rng.choice(["insert", "delete", "replace"]),
                                            rng.randrange(min(len(raw), 300)),
                                            rng.choice('"{}[],:\\ -.09eEabsuU'))])):
                monkeypatch.setattr(adapters.binance, "split_depth", fast_cut)
                fast = parse_one(parser, text, ts)
                monkeypatch.setattr(adapters.binance, "split_depth", lambda text, count: None)
                slow = parse_one(parser, text, ts, decoder=True)
                compared += 1
                if fast != slow:
                    # The one difference, by design: a corrupt deep level in the compact
                    # layout is found when the deep part is read (the decoder path checks the
                    # arrays' syntax at once). Then the near levels were good.
                    [(near, error)] = fast[0]
                    assert "corrupt depth level" in error and slow[0] == []
                    assert isinstance(near, BookDelta) and (near.bids or near.asks)
                    assert slow[1].malformed == parser.stats.malformed + 1
                    deferred += 1
                    continue
                malformed += fast[1].malformed - parser.stats.malformed
            monkeypatch.setattr(adapters.binance, "split_depth", fast_cut)
        parser.on_message(raw, ts)
    assert compared > 1000 and malformed > 100
    assert deferred > 10 or market == "spot"  # spot's diffs are rarely split
