# Tier 3 of docs/DESIGN.md: Debian kernels booted under qemu (internal/vm). Included from the
# Makefile; uses its GO.

# qemu without KVM; busybox-static for the initramfs (a dynamic busybox cannot run
# there); xz-utils and zstd unpack Debian's compressed modules; iproute2, nftables,
# iputils-ping and dash are copied into the VM from the host.
VM_APT_PACKAGES := qemu-system-x86 busybox-static xz-utils zstd iproute2 nftables iputils-ping dash

.PHONY: vmtest-deps vmkernels

vmtest-deps:
	@missing=$$(for p in $(VM_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo ">> installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Downloads the 6.1 and 6.12 cloud kernels once into ${XDG_CACHE_HOME:-~/.cache}/pktspan/kernels.
vmkernels: vmtest-deps
	$(GO) run ./internal/cmd/vm-fetch 6.1 6.12
