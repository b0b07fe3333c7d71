# efile-mcp over Streamable HTTP, for shared deployments (see README, "Container").
# No secret is baked in: SCNet credentials, EFILE_HTTP_TOKEN and EFILE_CONFIRM_SECRET come from the
# environment when the container runs. Binding 0.0.0.0 requires EFILE_HTTP_ALLOWED_HOSTS (the Host
# values clients use, e.g. efile.example.org:8765); the server refuses to start without it.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY efile_mcp ./efile_mcp
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EFILE_AUDIT_LOG=/var/lib/efile-mcp/audit.jsonl \
    EFILE_STATE_DIR=/var/lib/efile-mcp
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/efile efile \
    && mkdir -p /var/lib/efile-mcp \
    && chown efile:efile /var/lib/efile-mcp
# The audit log (and, without a Redis URL, the SQLite state store) lives here: mount a volume to keep it.
VOLUME ["/var/lib/efile-mcp"]
USER efile
EXPOSE 8765
# Alive = answers HTTP on /mcp, under the first name of EFILE_HTTP_ALLOWED_HOSTS (so the DNS-rebinding
# check passes). No bearer token needed: any status below 500 (401, 406) counts; no answer or a 5xx does not.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import http.client, os, sys; host = os.environ.get('EFILE_HTTP_ALLOWED_HOSTS', '').split(',')[0].strip().replace(':*', ':8765') or '127.0.0.1:8765'; c = http.client.HTTPConnection('127.0.0.1', 8765, timeout=4); c.request('GET', '/mcp', headers={'Host': host}); sys.exit(0 if c.getresponse().status < 500 else 1)"]
CMD ["efile-mcp", "--transport", "http", "--host", "0.0.0.0", "--port", "8765"]
