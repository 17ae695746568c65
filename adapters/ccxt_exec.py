"""Live execution through ccxt's async client: place, cancel, reconcile, never assume.

``CcxtExecution`` is the engine's execution venue in live mode. ``submit`` is synchronous for
the engine (it never awaits); each command runs as a named, referenced task, and every outcome
comes back to the engine as an order event through ``deliver`` (which queues it on the
engine's consumer, so events are applied in order, one at a time).

Error mapping (ccxt exception -> what we tell the engine):

* ``InsufficientFunds`` -> ``OrderRejected("insufficient_funds")``;
* ``OrderImmediatelyFillable`` (a post-only order would cross) ->
  ``OrderRejected("post_only_would_cross")``;
* ``InvalidOrder`` and ``BadRequest`` -> ``OrderRejected("invalid_order: ...")``;
* ``RateLimitExceeded`` / ``DDoSProtection`` on create -> ``OrderRejected("rate_limited")``
  (the venue refused it: nothing rests);
* ``RequestTimeout``, ``NetworkError`` and ``ExchangeNotAvailable`` on create -> the order's
  fate is UNKNOWN: it may have reached the venue. It is reconciled by client order id (open
  orders, then the order itself) until the venue says what happened; never assumed.
* on cancel: ``OrderNotFound`` -> ``OrderCancelRejected("unknown_order")`` and the order is
  reconciled (it most likely filled: its fills are fetched and delivered).

Client order ids carry the run's prefix, so our orders are recognisable at the venue (start-up
reconciliation, cancel-all) and a retried request cannot create a duplicate.

Fills arrive from ``watch_my_trades`` (ccxt pro) when available, with REST polling of
``fetch_my_trades`` as the fallback and as a periodic safety net; every trade id is delivered
once (``OrderFilled`` carries it, and the portfolio drops repeats too).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.events import (
    CancelOrder,
    Command,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    Side,
)

Deliver = Callable[[OrderEvent], None]
_EPS = 1e-12


@dataclass(slots=True)
class LiveOrder:
    """What we know of one of our orders at the venue."""

    client_order_id: str
    side: Side
    price: float
    qty: float
    filled: float = 0.0
    venue_id: str = ""
    done: bool = False


class CcxtExecution:
    """Place and cancel our quotes on a ccxt exchange; deliver what happens as order events."""

    def __init__(
        self,
        exchange: Any,
        symbol: str,
        deliver: Deliver,
        *,
        prefix: str,
        dry_run: bool = False,
        log: Any = None,
        reconcile_attempts: int = 6,
        reconcile_delay_s: float = 0.5,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.deliver = deliver
        self.prefix = prefix
        self.dry_run = dry_run
        self.log = log
        self.reconcile_attempts = reconcile_attempts
        self.reconcile_delay_s = reconcile_delay_s
        self.orders: dict[str, LiveOrder] = {}
        self.seen_trades: set[tuple[str, str]] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors = 0
        self.unknown_fate = 0

    # ---------------------------------------------------------------- commands

    def submit(self, command: Command) -> None:
        """Send one command (a task per command; the outcome comes back through ``deliver``)."""
        if isinstance(command, PlaceOrder):
            self.orders[command.client_order_id] = LiveOrder(
                command.client_order_id, command.side, command.price, command.qty)
            if self.dry_run:
                self._dry_run(command)
                return
            self._spawn(self._place(command), f"place:{command.client_order_id}")
        elif isinstance(command, CancelOrder):
            if self.dry_run:
                self._dry_run(command)
                return
            self._spawn(self._cancel(command), f"cancel:{command.client_order_id}")

    def _dry_run(self, command: Command) -> None:
        """Log what would be sent and acknowledge it locally: nothing reaches the venue."""
        now = time.time_ns()
        if isinstance(command, PlaceOrder):
            if self.log is not None:
                self.log.info("dry_run_place", client_order_id=command.client_order_id,
                              side=command.side.name, price=command.price, qty=command.qty,
                              post_only=command.post_only)
            self.deliver(OrderAccepted(now, command.client_order_id, "dry-run"))
        else:
            if self.log is not None:
                self.log.info("dry_run_cancel", client_order_id=command.client_order_id)
            self.orders.pop(command.client_order_id, None)
            self.deliver(OrderCanceled(now, command.client_order_id, "dry_run"))

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors += 1
            if self.log is not None:
                self.log.error("execution_task_failed", task=task.get_name(),
                               error=repr(task.exception())[:300])

    async def _place(self, command: PlaceOrder) -> None:
        import ccxt

        coid = command.client_order_id
        side = "buy" if command.side is Side.BUY else "sell"
        params: dict[str, Any] = {"clientOrderId": coid}
        if command.post_only:
            params["postOnly"] = True
        try:
            order = await self.exchange.create_order(self.symbol, "limit", side, command.qty,
                                                     command.price, params)
        except ccxt.InsufficientFunds:
            self._reject(coid, "insufficient_funds")
        except ccxt.OrderImmediatelyFillable:
            self._reject(coid, "post_only_would_cross")
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection):
            self._reject(coid, "rate_limited")
        except (ccxt.RequestTimeout, ccxt.NetworkError, ccxt.ExchangeNotAvailable) as exc:
            # The request may have reached the venue: find out, never assume.
            self.unknown_fate += 1
            if self.log is not None:
                self.log.warning("order_fate_unknown", client_order_id=coid,
                                 error=type(exc).__name__)
            await self.reconcile_order(coid)
        except (ccxt.InvalidOrder, ccxt.BadRequest) as exc:
            if "duplicate" in str(exc).lower():
                # Our own earlier attempt with this id may be resting: ask, don't assume.
                await self.reconcile_order(coid)
            else:
                self._reject(coid, f"invalid_order: {str(exc)[:120]}")
        else:
            self._accepted(coid, order)

    async def _cancel(self, command: CancelOrder) -> None:
        import ccxt

        coid = command.client_order_id
        live = self.orders.get(coid)
        try:
            await self.exchange.cancel_order(live.venue_id if live and live.venue_id else None,
                                             self.symbol, {"clientOrderId": coid})
        except ccxt.OrderNotFound:
            self.deliver(OrderCancelRejected(time.time_ns(), coid, "unknown_order"))
            await self.reconcile_order(coid)
        except (ccxt.RequestTimeout, ccxt.NetworkError, ccxt.ExchangeNotAvailable):
            await self.reconcile_order(coid)
        else:
            await self._collect_fills(coid)
            self._closed(coid, OrderCanceled(time.time_ns(), coid, "canceled"))

    # ---------------------------------------------------------------- outcomes

    def _reject(self, coid: str, reason: str) -> None:
        live = self.orders.pop(coid, None)
        if live is not None:
            live.done = True
        self.deliver(OrderRejected(time.time_ns(), coid, reason))

    def _accepted(self, coid: str, order: dict[str, Any]) -> None:
        live = self.orders.get(coid)
        if live is not None:
            live.venue_id = str(order.get("id") or "")
        self.deliver(OrderAccepted(time.time_ns(), coid, str(order.get("id") or "")))

    def _closed(self, coid: str, event: OrderEvent) -> None:
        live = self.orders.pop(coid, None)
        if live is not None and not live.done:
            live.done = True
            self.deliver(event)

    def on_trades(self, trades: list[dict[str, Any]]) -> int:
        """Deliver the fills of ours among ``trades`` (ccxt trade dicts), each once."""
        delivered = 0
        for trade in trades:
            tid = str(trade.get("id") or "")
            info = trade.get("info") or {}
            coid = str(trade.get("clientOrderId") or info.get("clientOrderId")
                       or info.get("c") or "")
            live = self._find(coid, str(trade.get("order") or ""))
            if live is None or not tid or (live.client_order_id, tid) in self.seen_trades:
                continue
            self.seen_trades.add((live.client_order_id, tid))
            qty = float(trade["amount"])
            live.filled += qty
            fee = trade.get("fee") or {}
            liquidity = Liquidity.MAKER if trade.get("takerOrMaker") != "taker" \
                else Liquidity.TAKER
            ts_ms = trade.get("timestamp")
            remaining = max(live.qty - live.filled, 0.0)
            self.deliver(OrderFilled(int(ts_ms) * 1_000_000 if ts_ms else time.time_ns(),
                                     live.client_order_id, live.side, float(trade["price"]),
                                     qty, remaining, float(fee.get("cost") or 0.0), liquidity,
                                     tid))
            delivered += 1
            if remaining <= _EPS:
                live.done = True
                self.orders.pop(live.client_order_id, None)
        return delivered

    def _find(self, coid: str, venue_id: str) -> LiveOrder | None:
        if coid and coid in self.orders:
            return self.orders[coid]
        if venue_id:
            for live in self.orders.values():
                if live.venue_id == venue_id:
                    return live
        return None

    async def _collect_fills(self, coid: str) -> None:
        live = self.orders.get(coid)
        if live is None or not live.venue_id:
            return
        trades = await self.exchange.fetch_my_trades(self.symbol, None, None,
                                                     {"orderId": live.venue_id})
        self.on_trades(trades)

    async def reconcile_order(self, coid: str) -> None:
        """Ask the venue what became of ``coid`` until it answers; deliver the outcome."""
        import ccxt

        delay = self.reconcile_delay_s
        for _ in range(self.reconcile_attempts):
            try:
                order = await self.exchange.fetch_order(None, self.symbol,
                                                        {"clientOrderId": coid})
            except ccxt.OrderNotFound:
                self._reject(coid, "not_at_venue")
                return
            except (ccxt.RequestTimeout, ccxt.NetworkError, ccxt.ExchangeNotAvailable):
                await asyncio.sleep(delay)
                delay *= 2
                continue
            live = self.orders.get(coid)
            if live is not None and not live.venue_id:
                live.venue_id = str(order.get("id") or "")
                self.deliver(OrderAccepted(time.time_ns(), coid, live.venue_id))
            status = order.get("status")
            if float(order.get("filled") or 0.0) > (live.filled if live else 0.0) + _EPS:
                await self._collect_fills(coid)
            if status == "canceled" or status == "rejected" or status == "expired":
                self._closed(coid, OrderCanceled(time.time_ns(), coid, f"venue:{status}"))
            return
        if self.log is not None:
            self.log.error("reconcile_failed", client_order_id=coid,
                           attempts=self.reconcile_attempts)

    # ---------------------------------------------------------------- streams and safety

    async def poll_fills(self, since_ms: int | None = None) -> int:
        """Fetch our recent trades by REST (fallback and safety net); return how many new."""
        trades = await self.exchange.fetch_my_trades(self.symbol, since_ms)
        return self.on_trades(trades)

    async def watch_fills(self, poll_interval_s: float = 5.0) -> None:
        """Deliver fills from ``watch_my_trades`` and, as a safety net, REST polling.

        The private stream can drop (events sent meanwhile are lost) or go silent without
        notice, so ``fetch_my_trades`` is polled every ``poll_interval_s`` whatever the
        stream does; trade ids make each fill count once.
        """
        poll = asyncio.get_running_loop().create_task(self._poll_loop(poll_interval_s),
                                                      name=f"poll-fills:{self.symbol}")
        try:
            while getattr(self.exchange, "has", {}).get("watchMyTrades"):
                try:
                    trades = await self.exchange.watch_my_trades(self.symbol)
                    self.on_trades(list(trades))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # ccxt raises NetworkError on a drop, and even KeyError from its own
                    # clean-up on some failures: the polling keeps fills flowing meanwhile.
                    if self.log is not None:
                        self.log.warning("private_stream_lost", error=type(exc).__name__)
                    await asyncio.sleep(poll_interval_s)
            await poll
        finally:
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll

    async def _poll_loop(self, interval_s: float) -> None:
        import ccxt

        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(ccxt.NetworkError, ccxt.ExchangeNotAvailable):
                await self.poll_fills()

    async def our_open_orders(self) -> list[dict[str, Any]]:
        """Return the venue's open orders of this symbol that carry our prefix."""
        orders = await self.exchange.fetch_open_orders(self.symbol)
        return [o for o in orders if str(o.get("clientOrderId") or "").startswith(self.prefix)]

    async def cancel_all_and_confirm(self, timeout_s: float = 10.0) -> int:
        """Cancel every open order of ours at the venue, then check none remain.

        Returns how many remain after ``timeout_s`` (0 when confirmed clean).
        """
        import ccxt

        if self.dry_run:
            return 0
        deadline = time.monotonic() + timeout_s
        remaining: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                remaining = await self.our_open_orders()
            except (ccxt.NetworkError, ccxt.ExchangeNotAvailable):
                await asyncio.sleep(0.2)
                continue
            if not remaining:
                return 0
            for order in remaining:
                with contextlib.suppress(ccxt.OrderNotFound, ccxt.NetworkError):
                    await self.exchange.cancel_order(order.get("id"), self.symbol)
            await asyncio.sleep(0.05)
        return len(remaining)
