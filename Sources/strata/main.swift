import StrataCommands

StrataCommand.runMain()
