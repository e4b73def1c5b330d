"""The bot by feature: one module per command family, each with its handlers and renderers.

Registered from the one command table, `bot.commands`.
"""
