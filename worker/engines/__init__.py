"""Ways of running MODNet behind one interface (base.Engine), and the choice between them."""
