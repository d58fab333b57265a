"""Built-in physics that needs no MG5aMC: an LHAPDF6 grid reader and the Drell-Yan (+ Z') process."""
