#!/usr/bin/env python3
"""Paid HTTP resource server for loopback interop tests.

  --version 2 (default): a FastAPI app behind the OFFICIAL x402 SDK payment
      middleware (x402.http.middleware.fastapi.payment_middleware) with an
      x402ResourceServer + HTTPFacilitatorClient + ExactEvmServerScheme.
      Wire: 402 + PAYMENT-REQUIRED header (body "{}"), client retries with
      PAYMENT-SIGNATURE, success carries PAYMENT-RESPONSE.
  --version 1: x402 2.25.0 ships NO v1 server middleware (its resource server
      is v2-only and ignores X-PAYMENT), so this mode is a small hand-written
      legacy middleware built from SDK parts (PaymentRequiredV1 /
      PaymentRequirementsV1 / PaymentPayloadV1 models, SDK header codecs and
      the SDK's HTTPFacilitatorClient for /verify and /settle). Wire: 402 with
      the JSON body {"x402Version":1,"accepts":[...]}, client retries with
      X-PAYMENT, success carries X-PAYMENT-RESPONSE. Same verify-before /
      settle-after-2xx/3xx semantics as the v2 middleware.

Routes:
  /paid/data            paid, --price-atomic (default 50000 = 0.05 USDC)
  --route PATH=ATOMIC   extra paid routes (repeatable). PATH may carry a verb
                        ("POST /paid/post=1000") and SDK wildcards ("/paid/x/*").
  /free                 free JSON
  /fail                 always HTTP 500 (paid at --price-atomic with --paid-fail)
  /health               free JSON
  anything else         200 JSON describing the request (free unless routed)
Query params on any route: sleep_ms=N (delay the handler), size=N (pad the
JSON body with N bytes), status=N (return that status), echo=1 (include the
request headers the server received).

Prints "READY <port>" on stdout once listening (--port 0 picks a free port).
--tls-cert/--tls-key serve HTTPS (for CONNECT / MITM tests).
Proxy environment variables are removed from this process (unless
--keep-proxy-env) so the SDK's httpx facilitator client always talks to the
facilitator directly, even if the test exported HTTP(S)_PROXY.
"""



import argparse
import asyncio
import json
import os
import re
import socket
import sys

DEFAULT_PAY_TO = "0x2096000000000000000000000000000000000287"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="x402 paid resource server (SDK middleware)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--facilitator", required=True, help="facilitator base URL")
    ap.add_argument("--price-atomic", default="50000", help="price of /paid/data (atomic units)")
    ap.add_argument("--pay-to", default=DEFAULT_PAY_TO)
    ap.add_argument("--network", default="eip155:84532", help="CAIP-2 network (v1 maps it to a legacy name)")
    ap.add_argument("--asset", default=None, help="token address (default: the network's USDC)")
    ap.add_argument("--version", type=int, choices=(1, 2), default=2)
    ap.add_argument("--route", action="append", default=[], metavar="PATH=ATOMIC",
                    help="additional paid route (repeatable)")
    ap.add_argument("--paid-fail", action="store_true", help="make /fail a paid route too")
    ap.add_argument("--max-timeout-seconds", type=int, default=300)
    ap.add_argument("--description", default="paid data")
    ap.add_argument("--keep-proxy-env", action="store_true")
    ap.add_argument("--tls-cert", default=None, help="PEM cert: serve HTTPS instead of HTTP")
    ap.add_argument("--tls-key", default=None, help="PEM key for --tls-cert")
    ap.add_argument("--log-level", default="warning")
    return ap.parse_args()


def scrub_proxy_env() -> None:
    for k in list(os.environ):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            del os.environ[k]
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "*"


def build_routes(args: argparse.Namespace) -> dict[str, str]:
    """pattern -> atomic price."""
    routes: dict[str, str] = {"/paid/data": str(args.price_atomic)}
    if args.paid_fail:
        routes["/fail"] = str(args.price_atomic)
    for spec in args.route:
        if "=" not in spec:
            sys.exit(f"--route expects PATH=ATOMIC, got {spec!r}")
        path, price = spec.rsplit("=", 1)
        if not price.isdigit():
            sys.exit(f"--route price must be an integer atomic amount: {spec!r}")
        routes[path.strip()] = price
    return routes


def asset_info(network: str, asset: str | None) -> dict:
    from x402.mechanisms.evm.default_assets import find_default_asset, get_default_asset

    if asset:
        found = find_default_asset(asset, network)
        return {"asset": asset, "name": (found or {}).get("name", "USDC"),
                "version": (found or {}).get("version", "2")}
    d = get_default_asset(network)
    return {"asset": d["asset"], "name": d["name"], "version": d["version"]}


# --------------------------------------------------------------------------
# The application (handlers are identical for v1 and v2)
# --------------------------------------------------------------------------

def make_app():
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="x402 interop paid server", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
    async def catch_all(path: str, request: Request):
        q = request.query_params
        if q.get("sleep_ms"):
            await asyncio.sleep(float(q["sleep_ms"]) / 1000.0)
        full = "/" + path
        body: dict = {"path": full, "method": request.method}
        status = int(q.get("status") or 200)
        if full == "/health":
            body["ok"] = True
        elif full == "/free":
            body.update(free=True, data="free content")
        elif full.startswith("/fail"):
            status = 500
            body["error"] = "intentional failure"
        else:
            body["data"] = "paid content"
        payload = getattr(request.state, "payment_payload", None)
        body["paid"] = payload is not None
        if payload is not None:
            inner = getattr(payload, "payload", {}) or {}
            auth = inner.get("authorization") or inner.get("permit2Authorization") or {}
            body["payer"] = auth.get("from")
        if q.get("echo"):
            body["received_headers"] = {k: v for k, v in request.headers.items()}
            raw = await request.body()
            body["received_body"] = raw.decode("utf-8", "replace")[:2000]
        if q.get("size"):
            body["pad"] = "x" * int(q["size"])
        return JSONResponse(body, status_code=status)

    return app


# --------------------------------------------------------------------------
# v2: the SDK's official middleware
# --------------------------------------------------------------------------

def install_v2(app, args, routes: dict[str, str]) -> None:
    from x402 import x402ResourceServer
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient
    from x402.http.middleware.fastapi import payment_middleware
    from x402.http.types import PaymentOption, RouteConfig
    from x402.mechanisms.evm.exact import register_exact_evm_server

    info = asset_info(args.network, args.asset)
    facilitator = HTTPFacilitatorClient(FacilitatorConfig(url=args.facilitator, timeout=30.0))
    server = x402ResourceServer(facilitator)
    register_exact_evm_server(server, args.network)

    sdk_routes = {
        pattern: RouteConfig(
            accepts=PaymentOption(
                scheme="exact",
                pay_to=args.pay_to,
                price={"amount": price, "asset": info["asset"],
                       "extra": {"name": info["name"], "version": info["version"]}},
                network=args.network,
                max_timeout_seconds=args.max_timeout_seconds,
            ),
            description=args.description,
        )
        for pattern, price in routes.items()
    }
    # Build the middleware ONCE (building it per request would re-run
    # initialize(), i.e. GET /supported, on every request).
    mw = payment_middleware(sdk_routes, server)

    @app.middleware("http")
    async def x402_mw(request, call_next):
        return await mw(request, call_next)


# --------------------------------------------------------------------------
# v1: legacy wire format from SDK parts (the SDK has no v1 server)
# --------------------------------------------------------------------------

def _compile(pattern: str) -> tuple[str, re.Pattern[str]]:
    parts = pattern.split(None, 1)
    verb, path = (parts[0].upper(), parts[1]) if len(parts) == 2 else ("*", pattern)
    trailing = path.endswith("/*")
    core = path[:-2] if trailing else path
    rx = "^" + re.escape(core).replace(r"\*", ".*?") + ("(?:/.*)?" if trailing else "") + "$"
    return verb, re.compile(rx, re.IGNORECASE | re.DOTALL)


def v1_network_name(network: str) -> str:
    if not network.startswith("eip155:"):
        return network
    from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS

    chain = int(network.split(":", 1)[1])
    for name, cid in V1_NETWORK_CHAIN_IDS.items():
        if cid == chain:
            return name
    sys.exit(f"no legacy v1 network name for {network}")


def install_v1(app, args, routes: dict[str, str]) -> None:
    from fastapi.responses import JSONResponse
    from starlette.responses import Response

    from x402.http import FacilitatorConfig, HTTPFacilitatorClient
    from x402.http.utils import decode_payment_signature_header, encode_payment_response_header
    from x402.schemas.v1 import PaymentPayloadV1, PaymentRequiredV1, PaymentRequirementsV1

    info = asset_info(args.network, args.asset)
    legacy_network = v1_network_name(args.network)
    facilitator = HTTPFacilitatorClient(FacilitatorConfig(url=args.facilitator, timeout=30.0))
    compiled = [(_compile(p), price) for p, price in routes.items()]

    def price_for(method: str, path: str) -> str | None:
        for (verb, rx), price in compiled:
            if (verb == "*" or verb == method.upper()) and rx.match(path):
                return price
        return None

    def challenge(requirements: PaymentRequirementsV1, error: str) -> JSONResponse:
        body = PaymentRequiredV1(error=error, accepts=[requirements])
        return JSONResponse(body.model_dump(by_alias=True, mode="json"), status_code=402,
                            headers={"Cache-Control": "no-store"})

    @app.middleware("http")
    async def x402_v1_mw(request, call_next):
        price = price_for(request.method, request.url.path)
        if price is None:
            return await call_next(request)
        requirements = PaymentRequirementsV1(
            scheme="exact", network=legacy_network, max_amount_required=price,
            resource=str(request.url), description=args.description,
            mime_type="application/json", pay_to=args.pay_to,
            max_timeout_seconds=args.max_timeout_seconds, asset=info["asset"],
            output_schema=None, extra={"name": info["name"], "version": info["version"]},
        )
        header = request.headers.get("x-payment")
        if not header:
            return challenge(requirements, "X-PAYMENT header is required")
        try:
            payload = decode_payment_signature_header(header)
            if not isinstance(payload, PaymentPayloadV1):
                raise ValueError("not an x402 v1 payload")
        except Exception as e:  # noqa: BLE001
            return challenge(requirements, f"Invalid X-PAYMENT header: {e}")
        if payload.scheme != "exact" or payload.network != legacy_network:
            return challenge(requirements, "No matching payment requirements")
        verify = await facilitator.verify(payload, requirements)
        if not verify.is_valid:
            return challenge(requirements, verify.invalid_reason or "Payment verification failed")
        request.state.payment_payload = payload
        request.state.payment_requirements = requirements
        response = await call_next(request)
        if response.status_code >= 400:  # same policy as the SDK's v2 middleware
            return response
        body = b""
        async for chunk in response.body_iterator:
            body += chunk
        settle = await facilitator.settle(payload, requirements)
        if not settle.success:
            return challenge(requirements, settle.error_reason or "Settlement failed")
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers["X-PAYMENT-RESPONSE"] = encode_payment_response_header(settle)
        headers["Access-Control-Expose-Headers"] = "X-PAYMENT-RESPONSE"
        return Response(content=body, status_code=response.status_code, headers=headers)


# --------------------------------------------------------------------------

def main() -> None:
    args = parse_args()
    if not args.keep_proxy_env:
        scrub_proxy_env()

    import uvicorn

    routes = build_routes(args)
    app = make_app()
    if args.version == 2:
        install_v2(app, args, routes)
    else:
        install_v1(app, args, routes)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            print(f"READY {port}", flush=True)
            print(json.dumps({"port": port, "version": args.version, "routes": routes,
                              "network": args.network, "payTo": args.pay_to}),
                  file=sys.stderr, flush=True)

    tls = {}
    if args.tls_cert:
        tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key}
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False,
                            timeout_keep_alive=30, **tls)
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
