"""Reading and writing images and layered files."""
