# SPDX-License-Identifier: GPL-2.0
#
# In the kernel tree this file's only job is the obj- line. Out of tree,
# `make` builds target_core_user.ko against KDIR, and the other targets
# drive the test rig in tools/testing.

ifneq ($(KERNELRELEASE),)

ifneq ($(KBUILD_EXTMOD),)
# Out-of-tree: build the module whatever the target kernel's config says,
# and let our copy of the uapi header win over the kernel's.
CONFIG_TCM_USER2 := m
NOSTDINC_FLAGS += -I$(src)/include/uapi
endif

obj-$(CONFIG_TCM_USER2) += target_core_user.o

# KUnit tests of the pure helpers, for kernels built with KUnit.
ifdef CONFIG_KUNIT
obj-$(CONFIG_TCM_USER2) += target_core_user_kunit.o
endif

else

STOCK_KREL := 6.1.0-56-amd64
ifneq ($(wildcard /lib/modules/$(shell uname -r)/build),)
KDIR ?= /lib/modules/$(shell uname -r)/build
else
KDIR ?= /usr/src/linux-headers-$(STOCK_KREL)
endif

TESTING := tools/testing

.PHONY: all modules clean setup check check-fast demo bench

all: modules

modules:
	@test -d "$(KDIR)" || $(TESTING)/vm/setup.sh --headers-only
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

setup:
	$(TESTING)/vm/setup.sh --debug

check:
	$(TESTING)/check.sh

check-fast:
	TCMU_KERNELS=stock $(TESTING)/check.sh

demo:
	$(TESTING)/demo.sh

bench:
	$(TESTING)/bench.sh

clean:
	@if [ -d "$(KDIR)" ]; then $(MAKE) -C $(KDIR) M=$(CURDIR) clean; fi
	rm -rf build

endif
