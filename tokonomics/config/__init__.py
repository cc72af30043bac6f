"""applyconfig (CONTRACT §5): a YAML file declares accounts and everything they hold; `parse` checks it whole,
`apply` writes it through the apps' services. It sits above billing, proxy and alerts because it writes to
all three. An installed app only so that Django finds its management commands."""
