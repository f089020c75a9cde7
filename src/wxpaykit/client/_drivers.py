"""The two drivers of flows (see :mod:`._flow`): the only code that differs by colour.

Each is a mixin giving a client ``_run(flow)``; it performs actions and nothing else.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from wxpaykit.client._flow import Action, Blocking, Flow, Send, SingleFlight, Sleep, Stream

__all__ = ["AsyncDriver", "SyncDriver"]

T = TypeVar("T")


class SyncDriver:
    """Performs actions with ``httpx.Client``, ``threading.Lock`` and ``time.sleep``."""

    def _init_driver(
        self,
        *,
        http: httpx.Client,
        sleep: Callable[[float], None] | None = None,
        mtls_http: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self._http = http
        self._sleep = sleep or time.sleep
        self._mtls_factory = mtls_http
        self._mtls_http: httpx.Client | None = None
        self._single_flight = threading.Lock()

    def _run(self, flow: Flow[T]) -> T:
        try:
            action = next(flow)
            while True:
                try:
                    outcome = self._perform(action)
                except Exception as exc:
                    action = flow.throw(exc)
                else:
                    action = flow.send(outcome)
        except StopIteration as stop:
            value: T = stop.value
            return value

    def _client_for(self, mtls: bool) -> httpx.Client:
        if not mtls:
            return self._http
        if self._mtls_http is None:
            if self._mtls_factory is None:
                raise RuntimeError("no mutual-TLS client configured")
            self._mtls_http = self._mtls_factory()
        return self._mtls_http

    def _perform(self, action: Action) -> Any:
        if isinstance(action, Send):
            http = self._client_for(action.mtls)
            auth = action.auth if action.auth is not None else httpx.USE_CLIENT_DEFAULT
            return http.send(action.request, auth=auth)
        if isinstance(action, Stream):
            return self._stream(action)
        if isinstance(action, Sleep):
            self._sleep(action.seconds)
            return None
        if isinstance(action, Blocking):
            return action.function()
        if isinstance(action, SingleFlight):
            with self._single_flight:
                return self._run(action.flow())
        with action.lock():
            return self._run(action.flow())

    def _stream(self, action: Stream) -> httpx.Response:
        auth = action.auth if action.auth is not None else httpx.USE_CLIENT_DEFAULT
        response = self._http.send(action.request, auth=auth, stream=True)
        try:
            if response.is_success:
                for chunk in response.iter_bytes():
                    action.on_chunk(chunk)
            else:
                response.read()
        finally:
            response.close()
        return response

    def _close_driver(self) -> None:
        self._http.close()
        if self._mtls_http is not None:
            self._mtls_http.close()


class AsyncDriver:
    """Performs actions with ``httpx.AsyncClient``, ``asyncio.Lock`` and ``asyncio.sleep``."""

    def _init_driver(
        self,
        *,
        http: httpx.AsyncClient,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        mtls_http: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        self._http = http
        self._sleep = sleep or asyncio.sleep
        self._mtls_factory = mtls_http
        self._mtls_http: httpx.AsyncClient | None = None
        self._single_flight = asyncio.Lock()

    async def _run(self, flow: Flow[T]) -> T:
        try:
            action = next(flow)
            while True:
                try:
                    outcome = await self._perform(action)
                except Exception as exc:
                    action = flow.throw(exc)
                else:
                    action = flow.send(outcome)
        except StopIteration as stop:
            value: T = stop.value
            return value

    def _client_for(self, mtls: bool) -> httpx.AsyncClient:
        if not mtls:
            return self._http
        if self._mtls_http is None:
            if self._mtls_factory is None:
                raise RuntimeError("no mutual-TLS client configured")
            self._mtls_http = self._mtls_factory()
        return self._mtls_http

    async def _perform(self, action: Action) -> Any:
        if isinstance(action, Send):
            http = self._client_for(action.mtls)
            auth = action.auth if action.auth is not None else httpx.USE_CLIENT_DEFAULT
            return await http.send(action.request, auth=auth)
        if isinstance(action, Stream):
            return await self._stream(action)
        if isinstance(action, Sleep):
            await self._sleep(action.seconds)
            return None
        if isinstance(action, Blocking):
            return await asyncio.to_thread(action.function)
        if isinstance(action, SingleFlight):
            async with self._single_flight:
                return await self._run(action.flow())
        lock = action.lock()
        await asyncio.to_thread(lock.__enter__)
        try:
            return await self._run(action.flow())
        finally:
            await asyncio.to_thread(lock.__exit__, None, None, None)

    async def _stream(self, action: Stream) -> httpx.Response:
        auth = action.auth if action.auth is not None else httpx.USE_CLIENT_DEFAULT
        response = await self._http.send(action.request, auth=auth, stream=True)
        try:
            if response.is_success:
                async for chunk in response.aiter_bytes():
                    action.on_chunk(chunk)
            else:
                await response.aread()
        finally:
            await response.aclose()
        return response

    async def _close_driver(self) -> None:
        await self._http.aclose()
        if self._mtls_http is not None:
            await self._mtls_http.aclose()
