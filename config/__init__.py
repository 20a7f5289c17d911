"""Configuration, the bottom layer every other may import: the one pydantic-settings `Settings`
(config.settings, the only reader of the environment) and the service names and ports."""
