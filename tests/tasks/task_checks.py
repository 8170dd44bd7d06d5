"""A task file's own check functions, found beside the file."""


async def squares_file_has_ten(result, session):
    python = next(tool for tool in session.tools if tool.namespace == "python")
    data = await session.perform(python.sandbox.download("squares.txt"))
    numbers = data.decode().split()
    return True if len(numbers) == 10 else f"expected ten numbers, found {len(numbers)}"
