# syntax=docker/dockerfile:1
# `clarion serve` in a small image: see docs/operations.md § Container image.
#
#   docker build -t clarion .
#   docker run --rm -p 8080:8080 -v "$PWD/flows:/flows:ro" -v clarion-data:/data \
#     -e OPENAI_API_KEY -e CLARION_API_KEYS clarion serve /flows --api-key-env CLARION_API_KEYS

# Build stage: the release binary, with the locked dependency versions.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin clarion \
 && install -D target/release/clarion /out/clarion

# Runtime stage: the binary, CA certificates for HTTPS providers and tools, nothing else.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin clarion \
 && mkdir -p /data /flows \
 && chown clarion:clarion /data
COPY --from=build /out/clarion /usr/local/bin/clarion
USER clarion
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# Every setting is a flag; these defaults make the image listen on all interfaces and keep
# its store on the volume. Add flags after the flows: `serve /flows --metrics-addr …`.
ENV RUST_LOG=info
ENTRYPOINT ["clarion"]
CMD ["serve", "/flows", "--bind", "0.0.0.0:8080", "--store", "/data/threads.db"]
# Liveness without curl in the image: bash's /dev/tcp speaks enough HTTP for /healthz.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# docker stop sends SIGTERM: clarion drains for --shutdown-grace (30 s) and exits 0;
# give `docker stop -t 35` or more.
STOPSIGNAL SIGTERM
