module hakube.local/tools/node-pause

go 1.24
