"""Fine-tuning: specs, recipes, components, presets, estimates."""
