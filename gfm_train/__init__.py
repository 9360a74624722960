"""GFM (Glance and Focus Matting): model, training, inference and metrics."""
