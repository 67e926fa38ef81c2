# Keyport's container image: `docker build -t keyport .`
#
# Two stages: the release binary is built with the Rust toolchain on
# Debian bookworm, then copied alone into debian:bookworm-slim, the same
# Debian release, so it links the glibc the runtime has. The binary needs
# only libc6 and libgcc-s1 from the runtime, both in every Debian image
# (tests/api/packaging.rs checks this with ldd).

FROM rust:1-bookworm AS builder
# The commit `keyport_build_info` names: read from .git when the build
# context has it; from a context without it (an exported tarball), give it:
#   docker build --build-arg SOURCE_COMMIT=$(git rev-parse --short=12 HEAD) -t keyport .
ARG SOURCE_COMMIT=
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin keyport \
 && strip target/release/keyport

FROM debian:bookworm-slim
# ca-certificates: outbound HTTPS (webhook deliveries, trusted issuers'
# JWKS) verifies servers against the system's roots. Nothing else: the
# healthcheck is `keyport healthcheck`, so there is no curl.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A user of its own; /data is the one place it may write (run the container
# with --read-only: nothing else is written).
RUN groupadd --system --gid 10001 keyport \
 && useradd --system --uid 10001 --gid keyport --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin keyport \
 && mkdir /data \
 && chown keyport:keyport /data \
 && chmod 0700 /data
COPY --from=builder /src/target/release/keyport /usr/local/bin/keyport
USER keyport:keyport
WORKDIR /data
# Configuration comes from KEYPORT_* variables alone (config/default.toml
# lists them). Listen on every interface of the container; keep the SQLite
# default, and the master key it creates beside the database, in /data.
# With PostgreSQL, set KEYPORT_DATABASE_URL and KEYPORT_MASTER_KEY instead
# (compose.yaml does). Set KEYPORT_ISSUER to the URL clients reach.
ENV KEYPORT_BIND=0.0.0.0:8080 \
    KEYPORT_DATABASE_URL=sqlite:///data/keyport.db
VOLUME ["/data"]
EXPOSE 8080
# Ready when GET /readyz answers 200 (the database answers, a signing key is
# loaded); `keyport healthcheck` finds the port from KEYPORT_BIND.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
  CMD ["keyport", "healthcheck"]
ENTRYPOINT ["keyport"]
CMD ["serve"]
