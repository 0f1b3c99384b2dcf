/* A kernel-module-shaped object: code in .text.* and in .init.text. */
int counter;

__attribute__((section(".init.text"), noinline)) int setup(int x)
{
	counter = x * 3;
	if (counter > 100)
		counter = 100;
	return counter + 1;
}

__attribute__((noinline)) int work(int y)
{
	int s = 0;

	for (int i = 0; i < y; i++)
		s += i * counter;
	return s;
}

__attribute__((section(".exit.text"), noinline)) void teardown(void)
{
	counter = 0;
}
