-- luacheck configuration for all Lua in the repository.
std = "luajit"
max_line_length = 120
codes = true
