-- luacheck configuration for all Lua in the repository.
std = "luajit"
max_line_length = 130
codes = true
