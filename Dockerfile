# syntax=docker/dockerfile:1
# scorch in a container: the same binary is the client (`scorch run`), the Ballista scheduler
# (`scorch scheduler`) and an executor (`scorch executor`).
#
#   docker build -t scorch .
#
# The runtime image runs as a non-root user and writes only under /tmp (model cache, executor
# shuffle files), so it works with a read-only root filesystem and a tmpfs or emptyDir on /tmp.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin scorch \
 && install -D target/release/scorch /out/scorch \
 && strip --strip-debug /out/scorch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin scorch
COPY --from=build /out/scorch /usr/local/bin/scorch
USER 10001:10001
WORKDIR /tmp
ENV SCORCH_CACHE_DIR=/tmp/scorch-cache \
    SCORCH_LOG_FORMAT=json
ENTRYPOINT ["scorch"]
CMD ["--help"]
