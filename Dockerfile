# topcoins: one image, any service (`topcoins up|api|price|ranking|sim|cmc`).
# Build: docker build -t topcoins .
# The dashboard's assets first (web/, bundled by scripts/build-web from npm packages pinned by
# web/package-lock.json); the binary embeds them.
FROM node:20-bookworm-slim AS web
WORKDIR /src
COPY web/package.json web/package-lock.json web/
RUN cd web && npm ci --no-audit --no-fund
COPY web web
COPY scripts/build-web scripts/build-web
RUN scripts/build-web

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=web /src/web/dist web/dist
RUN cargo build --release --locked -p topcoins \
 && cp target/release/topcoins /usr/local/bin/topcoins

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin topcoins
COPY --from=build /usr/local/bin/topcoins /usr/local/bin/topcoins
USER topcoins
ENV TOPCOINS_LOG_FORMAT=json
# No transparent huge pages for mimalloc's arenas, even on hosts with THP "always" (the binary
# is built without mimalloc's THP advice; see README, "Taking in a change quickly").
ENV MIMALLOC_ALLOW_THP=0
EXPOSE 8080 9000 9101 9102
ENTRYPOINT ["topcoins"]
CMD ["--help"]
