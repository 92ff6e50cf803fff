# bootverify on Debian bookworm. The set-up is the README Quick start's, nothing more: ci/setup.sh
# installs every apt package (python3 and ca-certificates included), arm64 as a dpkg architecture
# and the venv. The second step only warms the cache: the agent's busybox (busybox-static:arm64)
# and the Debian kernels the tests use (tests/debian.py: 6.1.0-56 image + headers, 6.1.0-54
# image), so a container run downloads nothing. The sample images are built on first use (cached
# in $BOOTVERIFY_CACHE; mount a volume there to keep them). Runs the test suite by default.
FROM debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive BOOTVERIFY_CACHE=/var/cache/bootverify
WORKDIR /src
COPY . /src
RUN ci/setup.sh
RUN .venv/bin/python -c "from bootverify.debpkg import unpacked; \
[unpacked(p + ':arm64') for p in ('busybox-static', 'linux-image-6.1.0-56-arm64', \
 'linux-headers-6.1.0-56-arm64', 'linux-image-6.1.0-54-arm64')]"
CMD ["ci/test.sh"]
