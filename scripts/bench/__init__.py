"""`make bench`: clave and the Node anchors side by side (see __main__)."""
