# graceful's image: the release binary on distroless (glibc, CA certificates, a nonroot
# user), nothing else. e2e/graceful-image assembles the same image without a container
# engine: keep the binary path, the user and the entrypoint in step with it.
#
# Multi-platform (`docker buildx build --platform linux/amd64,linux/arm64`): the build
# stage runs on the builder's own platform and cross-compiles for the target, which is
# much faster than compiling under emulation.
FROM --platform=$BUILDPLATFORM docker.io/library/rust:1.89-bookworm AS build
ARG TARGETARCH
WORKDIR /src
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-gnu >/rust-target ;; \
      arm64) echo aarch64-unknown-linux-gnu >/rust-target \
        && apt-get update && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross ;; \
      *) echo "unsupported architecture: $TARGETARCH" >&2 && exit 1 ;; \
    esac \
    && rustup target add "$(cat /rust-target)"
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
# A member of the workspace: cargo needs its manifest even to build graceful alone.
COPY e2e/victim e2e/victim
RUN target="$(cat /rust-target)" \
    && cargo build --release --locked --bin graceful --target "$target" \
    && mkdir -p target/release && cp "target/$target/release/graceful" target/release/graceful

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/graceful /graceful
# distroless's nonroot; the Deployment runs as the same numbers.
USER 65532:65532
ENTRYPOINT ["/graceful", "run"]
