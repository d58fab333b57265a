# madnis_bridge.mk: makefile fragment read after a MadEvent P-dir's own makefile
#   make -f makefile -f madnis_bridge.mk madnis-lib MADNIS_SRC=... MADNIS_DIR=... MADNIS_LIB=...
# It compiles the P-dir's objects with the directory's own rules and flags, compiles the glue,
# makes MadEvent's random-number, unweighting and event-writing entry points weak (the glue
# provides them), hides driver.o's main program and links everything into one shared library.

MADNIS_MATRIX = $(if $(strip $(MATRIX)),$(MATRIX),$(MATRIX_HEL))
MADNIS_PROCESS = $(filter-out driver.o unwgt.o,$(PROCESS))
OBJCOPY ?= objcopy

$(MADNIS_DIR)/madnis_bridge.o: $(MADNIS_SRC)/madnis_bridge.f $(MADNIS_SRC)/madnis_glue.inc
	$(FC) $(FFLAGS) -c $< -o $@ -I. -I../../Source/ -I$(MADNIS_SRC)

$(MADNIS_DIR)/driver.o: driver.o
	$(OBJCOPY) --localize-symbol=main --localize-symbol=MAIN__ $< $@

$(MADNIS_DIR)/unwgt.o: unwgt.o
	$(OBJCOPY) --weaken-symbol=unwgt_ $< $@

$(MADNIS_DIR)/libdsample.a: $(LIBDIR)libdsample.a
	$(OBJCOPY) --weaken-symbol=ntuple_ $< $@

$(MADNIS_DIR)/libgeneric.a: $(LIBDIR)libgeneric.a
	$(OBJCOPY) --weaken-symbol=ntuple_ --weaken-symbol=write_event_ $< $@

madnis-lib: $(MADNIS_DIR)/madnis_bridge.o $(MADNIS_DIR)/driver.o $(MADNIS_DIR)/unwgt.o \
            $(MADNIS_DIR)/libdsample.a $(MADNIS_DIR)/libgeneric.a $(MADNIS_PROCESS) $(MADNIS_MATRIX)
	$(FC) -shared -o $(MADNIS_LIB) $(MADNIS_DIR)/madnis_bridge.o $(MADNIS_DIR)/driver.o \
	    $(MADNIS_DIR)/unwgt.o $(MADNIS_PROCESS) $(MADNIS_MATRIX) -L$(MADNIS_DIR) \
	    $(LINKLIBS) $(LDFLAGS) $(BIASDEPENDENCIES)

.PHONY: madnis-lib
