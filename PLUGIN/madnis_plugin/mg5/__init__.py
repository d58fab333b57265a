"""MG5aMC glue: ``output madnis`` exporter, run_card block registration, launch interface, MadEvent hook.

``plugin`` (exporter, interface) imports MG5aMC's ``madgraph`` package; ``madevent_hook`` and
``madevent_run`` only use the MadEvent command object and banner module they are handed, so they also
work inside an output directory's ``bin/internal`` copy of MadEvent where ``madgraph`` is absent.
"""
