# bootverify on Debian bookworm: the same set-up as the README's Quick start (ci/setup.sh),
# with the agent's busybox (busybox-static:arm64) and the Debian kernels the tests use
# (tests/debian.py: 6.1.0-56 image + headers, 6.1.0-54 image) baked into the cache, so a
# container run downloads nothing. The sample images are built on first use (cached in
# $BOOTVERIFY_CACHE; mount a volume there to keep them). Runs the test suite by default.
FROM debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive BOOTVERIFY_CACHE=/var/cache/bootverify
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv \
        ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN ci/setup.sh \
 && .venv/bin/python -c "from bootverify.debpkg import unpacked; \
[unpacked(p + ':arm64') for p in ('busybox-static', 'linux-image-6.1.0-56-arm64', \
 'linux-headers-6.1.0-56-arm64', 'linux-image-6.1.0-54-arm64')]"
CMD ["ci/test.sh"]
